/*
 * The alarm summary page (issue 9 §4): standing alarms with filter (region, priority, state, class) and sort;
 * operators and admins select several and acknowledge them with one optional comment, shelve one with a
 * duration and reason, unshelve; admins also take one out of service with a reason and return it. Managers
 * and crews see everything and get no action buttons (the API refuses them anyway, 403, audited).
 * The journal view below searches /api/alarms/journal by time, region, device, class, priority and state.
 *
 * The standing alarms are live: the banner (banner.js, loaded first) holds them from its WebSocket and tells
 * this page when they change (window.WaterworksAlarms); until its snapshot arrives, GET /api/alarms fills in.
 * Nothing from the wire becomes markup (textContent only).
 */
'use strict';

(function () {
  const LANG_KEY = 'waterworks.lang';
  const ACT_ROLES = ['admin', 'operator'];
  const PRIORITIES = ['urgent', 'high', 'medium', 'low'];
  const STATES = ['unacknowledged', 'acknowledged', 'returned_unacknowledged', 'shelved', 'suppressed_by_design', 'out_of_service'];
  const JOURNAL_STATES = ['normal'].concat(STATES);
  const CLASSES = [
    'quality_high_high', 'quality_high', 'quality_low', 'quality_low_low', 'sensor_untrusted', 'comm_lost',
    'meter_comm_lost', 'meter_tamper', 'meter_reverse_flow', 'meter_fault', 'meter_battery_low', 'meter_valve_fault',
    'volume_fell', 'volume_rollover', 'volume_suspected_swap', 'valve_command_failed', 'valve_uncommanded',
    'abnormal_usage', 'night_flow', 'zone_leakage',
  ];
  const JOURNAL_PAGE = 100;

  const I18N = {
    zh: {
      title: '报警',
      page_title: '报警 · 智慧水务监控',
      back: '返回监控总览',
      user: '用户',
      language: '语言',
      standing: '当前报警',
      journal: '报警日志',
      all: '全部',
      f_region: '区域',
      f_priority: '优先级',
      f_state: '状态',
      f_class: '类别',
      f_sort: '排序',
      f_from: '从',
      f_to: '到',
      f_device: '设备',
      sort_priority: '优先级',
      sort_time: '时间（最新）',
      sort_device: '设备',
      sort_state: '状态',
      select_all: '全选',
      comment_placeholder: '确认备注（可选）',
      ack_selected: '确认所选（{n}）',
      empty: '没有符合条件的报警',
      c_select: '选择',
      c_priority: '优先级',
      c_alarm: '报警',
      c_region: '区域',
      c_state: '状态',
      c_value: '数值 / 限值',
      c_time: '时间',
      c_actions: '操作',
      select_one: '选择 {alarm}',
      shelve: '搁置',
      unshelve: '取消搁置',
      oos: '停用',
      return_service: '恢复启用',
      shelve_title: '搁置报警',
      oos_title: '停用报警',
      shelve_minutes: '搁置时长（分钟）',
      reason_optional: '原因（可选）',
      reason_required: '原因（必填）',
      cancel: '取消',
      confirm_shelve: '搁置',
      confirm_oos: '停用',
      acked: '已确认 {n} 条报警',
      ack_partly: '已确认 {n} 条，{m} 条未确认：{why}',
      done: '{what}：{alarm}',
      failed: '未执行：{why}',
      network: '网络错误，结果未知，请刷新查看',
      until: '至 {t}',
      by: '{by}：{c}',
      search: '查询',
      older: '较早',
      j_count: '{n} 条记录',
      j_none: '没有符合条件的记录',
      j_line: '{what} · {from} → {to}',
      role: { admin: '管理员', operator: '调度员', manager: '经理', crew: '外勤', billing: '收费员' },
    },
    en: {
      title: 'Alarms',
      page_title: 'Alarms · Waterworks',
      back: 'Back to overview',
      user: 'User',
      language: 'Language',
      standing: 'Standing alarms',
      journal: 'Alarm journal',
      all: 'All',
      f_region: 'Region',
      f_priority: 'Priority',
      f_state: 'State',
      f_class: 'Class',
      f_sort: 'Sort',
      f_from: 'From',
      f_to: 'To',
      f_device: 'Device',
      sort_priority: 'Priority',
      sort_time: 'Time (newest)',
      sort_device: 'Device',
      sort_state: 'State',
      select_all: 'Select all',
      comment_placeholder: 'Acknowledge comment (optional)',
      ack_selected: 'Acknowledge selected ({n})',
      empty: 'No alarms match',
      c_select: 'Select',
      c_priority: 'Priority',
      c_alarm: 'Alarm',
      c_region: 'Region',
      c_state: 'State',
      c_value: 'Value / limit',
      c_time: 'Time',
      c_actions: 'Actions',
      select_one: 'Select {alarm}',
      shelve: 'Shelve',
      unshelve: 'Unshelve',
      oos: 'Out of service',
      return_service: 'Return to service',
      shelve_title: 'Shelve alarm',
      oos_title: 'Take alarm out of service',
      shelve_minutes: 'Shelve for (minutes)',
      reason_optional: 'Reason (optional)',
      reason_required: 'Reason (required)',
      cancel: 'Cancel',
      confirm_shelve: 'Shelve',
      confirm_oos: 'Take out of service',
      acked: '{n} alarms acknowledged',
      ack_partly: '{n} acknowledged, {m} not: {why}',
      done: '{what}: {alarm}',
      failed: 'Not done: {why}',
      network: 'Network error; the outcome is unknown, reload to see',
      until: 'until {t}',
      by: '{by}: {c}',
      search: 'Search',
      older: 'Older',
      j_count: '{n} records',
      j_none: 'No records match',
      j_line: '{what} · {from} → {to}',
      role: { admin: 'Administrator', operator: 'Operator', manager: 'Manager', crew: 'Field crew', billing: 'Billing' },
    },
  };

  const W = window.WaterworksAlarms;
  const page = {
    lang: W ? W.lang() : 'zh',
    user: null,
    fetched: [],
    selected: new Set(),
    journal: [],
    dialog: null,
  };

  function byId(id) {
    return document.getElementById(id);
  }

  function t(key, vars) {
    let s = I18N[page.lang][key];
    if (s === undefined) s = I18N.en[key];
    if (typeof s !== 'string') return key;
    return s.replace(/\{(\w+)\}/g, (m, k) => (vars && vars[k] !== undefined ? String(vars[k]) : m));
  }

  function label(table, key) {
    if (table === 'role') return (I18N[page.lang].role || {})[key] || key;
    return W ? W.label(table, key) : key;
  }

  function setText(e, s) {
    if (e.textContent !== s) e.textContent = s;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function alarmId(a) {
    return a.key.class + '~' + a.key.device + '~' + a.key.detail;
  }

  function describe(a) {
    return W ? W.describe(a) : alarmId(a);
  }

  function fmt(ms) {
    if (typeof ms !== 'number') return '—';
    const d = new Date(ms);
    const two = (n) => String(n).padStart(2, '0');
    return d.getFullYear() + '-' + two(d.getMonth() + 1) + '-' + two(d.getDate()) + ' ' + two(d.getHours()) + ':' +
      two(d.getMinutes()) + ':' + two(d.getSeconds());
  }

  function num(v) {
    return typeof v === 'number' ? String(Math.round(v * 1000) / 1000) : '—';
  }

  function canAct() {
    return !!page.user && ACT_ROLES.indexOf(page.user.role) >= 0;
  }

  function isAdmin() {
    return !!page.user && page.user.role === 'admin';
  }

  function current() {
    return W && W.ready() ? W.alarms() : page.fetched;
  }

  // ---------------------------------------------------------------------------
  // Standing alarms.
  // ---------------------------------------------------------------------------
  const RANK = { urgent: 4, high: 3, medium: 2, low: 1 };

  function sorted(list) {
    const by = byId('f-sort').value;
    const cmp = {
      priority: (a, b) => (RANK[b.priority] || 0) - (RANK[a.priority] || 0) || (b.since || 0) - (a.since || 0),
      time: (a, b) => (b.raised_at || b.since || 0) - (a.raised_at || a.since || 0),
      device: (a, b) => alarmId(a).localeCompare(alarmId(b)),
      state: (a, b) => STATES.indexOf(a.state) - STATES.indexOf(b.state) || (RANK[b.priority] || 0) - (RANK[a.priority] || 0),
    }[by] || (() => 0);
    return list.slice().sort(cmp);
  }

  function filtered() {
    const f = {
      region: byId('f-region').value,
      priority: byId('f-priority').value,
      state: byId('f-state').value,
      cls: byId('f-class').value,
    };
    return current().filter((a) =>
      (!f.region || a.region === f.region) && (!f.priority || a.priority === f.priority) &&
      (!f.state || a.state === f.state) && (!f.cls || a.key.class === f.cls));
  }

  function fillSelect(sel, values, table) {
    const keep = sel.value;
    const first = sel.options[0];
    setText(first, t('all'));
    sel.replaceChildren(first, ...values.map((v) => {
      const o = el('option', null, table ? label(table, v) : v);
      o.value = v;
      return o;
    }));
    sel.value = values.indexOf(keep) >= 0 ? keep : '';
  }

  function renderFilters() {
    const regions = [...new Set(current().map((a) => a.region))].sort();
    fillSelect(byId('f-region'), regions, null);
    fillSelect(byId('f-priority'), PRIORITIES, 'priority');
    fillSelect(byId('f-state'), STATES, 'state');
    fillSelect(byId('f-class'), CLASSES, 'class');
    fillSelect(byId('j-class'), CLASSES, 'class');
    fillSelect(byId('j-priority'), PRIORITIES, 'priority');
    fillSelect(byId('j-state'), JOURNAL_STATES, 'state');
  }

  function actionButton(text, action, id) {
    const b = el('button', 'act', text);
    b.type = 'button';
    b.dataset.action = action;
    b.dataset.alarm = id;
    return b;
  }

  function row(a) {
    const id = alarmId(a);
    const tr = el('tr');
    tr.dataset.alarm = id;
    tr.dataset.state = a.state;
    tr.dataset.priority = a.priority;
    const sel = el('td', 'c-sel');
    if (canAct() && (a.state === 'unacknowledged' || a.state === 'returned_unacknowledged')) {
      const box = el('input');
      box.type = 'checkbox';
      box.className = 'sel';
      box.dataset.alarm = id;
      box.checked = page.selected.has(id);
      box.setAttribute('aria-label', t('select_one', { alarm: describe(a) }));
      sel.append(box);
    }
    const prio = el('td', 'c-prio');
    prio.append(el('span', 'prio prio-' + a.priority, label('priority', a.priority)));
    const what = el('td', 'c-alarm', describe(a));
    const region = el('td', 'c-region', a.region);
    const st = el('td', 'c-state');
    st.append(el('span', 'state', label('state', a.state)));
    if (a.state === 'shelved' && a.shelved_until) st.append(el('span', 'sub', t('until', { t: fmt(a.shelved_until) })));
    if (a.by) st.append(el('span', 'sub', t('by', { by: a.by, c: a.comment || '' })));
    const value = el('td', 'c-value', num(a.value) + ' / ' + num(a.limit));
    const time = el('td', 'c-time', fmt(a.raised_at || a.since));
    const acts = el('td', 'c-actions');
    if (canAct()) {
      if (a.state === 'shelved') acts.append(actionButton(t('unshelve'), 'unshelve', id));
      else if (a.state !== 'out_of_service' && a.state !== 'suppressed_by_design') acts.append(actionButton(t('shelve'), 'shelve', id));
    }
    if (isAdmin()) {
      if (a.state === 'out_of_service') acts.append(actionButton(t('return_service'), 'return-to-service', id));
      else acts.append(actionButton(t('oos'), 'out-of-service', id));
    }
    tr.append(sel, prio, what, region, st, value, time, acts);
    return tr;
  }

  function renderAlarms() {
    const list = sorted(filtered());
    const ids = new Set(current().map(alarmId));
    for (const id of [...page.selected]) if (!ids.has(id)) page.selected.delete(id);
    byId('rows').replaceChildren(...list.map(row));
    byId('empty').hidden = list.length > 0;
    byId('alarms').hidden = list.length === 0;
    byId('bulk').hidden = !canAct();
    byId('alarms').classList.toggle('no-select', !canAct());
    renderBulk();
  }

  function renderBulk() {
    const btn = byId('ack-selected');
    setText(btn, t('ack_selected', { n: page.selected.size }));
    btn.disabled = page.selected.size === 0;
    const boxes = [...document.querySelectorAll('#rows input.sel')];
    byId('select-all').checked = boxes.length > 0 && boxes.every((b) => b.checked);
  }

  // The last message, kept as a text key and its values so that a language switch translates it too.
  let lastStatus = null;

  function status(key, vars, bad) {
    lastStatus = { key: key, vars: vars, bad: bad };
    renderStatus();
  }

  function renderStatus() {
    const s = byId('status');
    if (!lastStatus) return;
    const vars = Object.assign({}, lastStatus.vars);
    if (vars.what) vars.what = t(vars.what);
    if (vars.alarmObj) vars.alarm = describe(vars.alarmObj);
    setText(s, t(lastStatus.key, vars));
    s.classList.toggle('bad', !!lastStatus.bad);
  }

  function post(path, body) {
    return fetch(path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body),
    }).then((res) => res.json().catch(() => ({})).then((json) => ({ status: res.status, json: json })));
  }

  function refetch() {
    return fetch('/api/alarms', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } })
      .then((res) => (res.ok ? res.json() : []))
      .then((list) => {
        page.fetched = Array.isArray(list) ? list : [];
        renderFilters();
        renderAlarms();
      })
      .catch(() => undefined);
  }

  function acknowledgeSelected() {
    const ids = [...page.selected];
    if (ids.length === 0) return;
    const comment = byId('ack-comment').value.trim();
    const body = { ids: ids };
    if (comment) body.comment = comment;
    byId('ack-selected').disabled = true;
    post('/api/alarms/ack', body).then((r) => {
      if (r.status !== 200) {
        status('failed', { why: (r.json && r.json.error) || 'HTTP ' + r.status }, true);
        return;
      }
      const results = Array.isArray(r.json.results) ? r.json.results : [];
      const ok = results.filter((x) => x.status === 200);
      const bad = results.filter((x) => x.status !== 200);
      for (const x of ok) page.selected.delete(x.id);
      if (bad.length === 0) {
        status('acked', { n: ok.length }, false);
        byId('ack-comment').value = '';
      } else {
        status('ack_partly', { n: ok.length, m: bad.length, why: bad[0].error || '' }, true);
      }
      refetch();
    }, () => status('network', {}, true));
  }

  // One dialog for shelve (minutes + optional reason) and out of service (required reason).
  function openDialog(kind, id) {
    const a = current().find((x) => alarmId(x) === id);
    page.dialog = { kind: kind, id: id };
    const d = byId('act-dialog');
    d.dataset.kind = kind;
    setText(byId('ad-title'), t(kind === 'shelve' ? 'shelve_title' : 'oos_title'));
    setText(byId('ad-alarm'), a ? describe(a) : id);
    byId('ad-minutes').hidden = kind !== 'shelve';
    byId('ad-minutes-label').hidden = kind !== 'shelve';
    byId('ad-minutes').max = isAdmin() ? '10080' : '480';
    setText(byId('ad-text-label'), t(kind === 'shelve' ? 'reason_optional' : 'reason_required'));
    byId('ad-text').value = '';
    byId('ad-text').required = kind !== 'shelve';
    setText(byId('ad-confirm'), t(kind === 'shelve' ? 'confirm_shelve' : 'confirm_oos'));
    if (typeof d.showModal === 'function') d.showModal();
    else d.setAttribute('open', '');
  }

  function closeDialog() {
    const d = byId('act-dialog');
    if (d.open && typeof d.close === 'function') d.close();
    else d.removeAttribute('open');
    page.dialog = null;
  }

  function submitDialog(e) {
    e.preventDefault();
    const dlg = page.dialog;
    if (!dlg) return;
    const text = byId('ad-text').value.trim();
    let path;
    let body;
    if (dlg.kind === 'shelve') {
      const minutes = Math.floor(Number(byId('ad-minutes').value));
      if (!(minutes >= 1)) {
        byId('ad-minutes').focus();
        return;
      }
      body = { minutes: minutes };
      if (text) body.reason = text;
      path = '/api/alarms/' + encodeURIComponent(dlg.id) + '/shelve';
    } else {
      if (!text) {
        byId('ad-text').focus();
        return;
      }
      body = { reason: text };
      path = '/api/alarms/' + encodeURIComponent(dlg.id) + '/out-of-service';
    }
    closeDialog();
    act(path, body, dlg.kind, dlg.id);
  }

  function act(path, body, kind, id) {
    const a = current().find((x) => alarmId(x) === id);
    post(path, body).then((r) => {
      if (r.status === 200) {
        const what = { shelve: 'shelve', unshelve: 'unshelve', 'out-of-service': 'oos', 'return-to-service': 'return_service' }[kind];
        status('done', { what: what, alarm: id, alarmObj: a }, false);
      } else {
        status('failed', { why: (r.json && r.json.error) || 'HTTP ' + r.status }, true);
      }
      refetch();
    }, () => status('network', {}, true));
  }

  function onRowsClick(e) {
    const b = e.target.closest('button[data-action]');
    if (!b) return;
    const id = b.dataset.alarm;
    switch (b.dataset.action) {
      case 'shelve':
        openDialog('shelve', id);
        break;
      case 'out-of-service':
        openDialog('out-of-service', id);
        break;
      case 'unshelve':
        act('/api/alarms/' + encodeURIComponent(id) + '/unshelve', {}, 'unshelve', id);
        break;
      case 'return-to-service':
        act('/api/alarms/' + encodeURIComponent(id) + '/return-to-service', {}, 'return-to-service', id);
        break;
    }
  }

  function onRowsChange(e) {
    const box = e.target.closest('input.sel');
    if (!box) return;
    if (box.checked) page.selected.add(box.dataset.alarm);
    else page.selected.delete(box.dataset.alarm);
    renderBulk();
  }

  function selectAll() {
    const on = byId('select-all').checked;
    for (const box of document.querySelectorAll('#rows input.sel')) {
      box.checked = on;
      if (on) page.selected.add(box.dataset.alarm);
      else page.selected.delete(box.dataset.alarm);
    }
    renderBulk();
  }

  // ---------------------------------------------------------------------------
  // The journal.
  // ---------------------------------------------------------------------------
  function localMs(input) {
    if (!input.value) return null;
    const ms = new Date(input.value).getTime();
    return Number.isFinite(ms) ? ms : null;
  }

  function journalQuery(before) {
    const q = new URLSearchParams();
    const from = localMs(byId('j-from'));
    const to = localMs(byId('j-to'));
    if (from !== null) q.set('from', String(from));
    if (to !== null) q.set('to', String(to));
    for (const [id, key] of [['j-region', 'region'], ['j-device', 'device'], ['j-class', 'class'], ['j-priority', 'priority'], ['j-state', 'state']]) {
      const v = byId(id).value.trim();
      if (v) q.set(key, v);
    }
    q.set('limit', String(JOURNAL_PAGE));
    if (before !== undefined) q.set('before', String(before));
    return q.toString();
  }

  function journalItem(r) {
    const li = el('li', 'jrec');
    li.dataset.what = r.what;
    li.dataset.priority = r.priority;
    const head = el('div', 'jhead');
    head.append(el('time', 'jtime', fmt(r.at)), el('span', 'prio prio-' + r.priority, label('priority', r.priority)),
      el('span', 'jwhat', t('j_line', { what: label('what', r.what), from: label('state', r.from), to: label('state', r.to) })));
    const body = el('div', 'jbody', describe(r) + ' · ' + r.region);
    const who = el('div', 'jwho', r.by + (r.comment ? ' — ' + r.comment : '') +
      (typeof r.value === 'number' ? ' · ' + num(r.value) + (typeof r.limit === 'number' ? ' / ' + num(r.limit) : '') : ''));
    li.append(head, body, who);
    return li;
  }

  function loadJournal(more) {
    const before = more && page.journal.length ? page.journal[page.journal.length - 1].id : undefined;
    fetch('/api/alarms/journal?' + journalQuery(before), { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } })
      .then((res) => res.json().then((json) => ({ status: res.status, json: json })))
      .then((r) => {
        if (r.status !== 200) {
          setText(byId('j-status'), t('failed', { why: (r.json && r.json.error) || 'HTTP ' + r.status }));
          return;
        }
        page.journal = more ? page.journal.concat(r.json) : r.json;
        renderJournal(r.json.length === JOURNAL_PAGE);
      })
      .catch(() => setText(byId('j-status'), t('network')));
  }

  function renderJournal(maybeMore) {
    byId('journal').replaceChildren(...page.journal.map(journalItem));
    setText(byId('j-status'), page.journal.length ? t('j_count', { n: page.journal.length }) : t('j_none'));
    if (maybeMore !== undefined) byId('j-older').hidden = !maybeMore;
  }

  // ---------------------------------------------------------------------------
  // Language, user, start.
  // ---------------------------------------------------------------------------
  function applyLabels() {
    document.documentElement.lang = page.lang === 'zh' ? 'zh-CN' : 'en';
    document.title = t('page_title');
    for (const e of document.querySelectorAll('[data-i18n]')) setText(e, t(e.dataset.i18n));
    for (const e of document.querySelectorAll('[data-i18n-label]')) e.setAttribute('aria-label', t(e.dataset.i18nLabel));
    for (const e of document.querySelectorAll('[data-i18n-placeholder]')) e.setAttribute('placeholder', t(e.dataset.i18nPlaceholder));
    for (const b of document.querySelectorAll('.lang-switch button')) {
      b.setAttribute('aria-pressed', b.dataset.lang === page.lang ? 'true' : 'false');
    }
    if (page.user) {
      setText(byId('user-name'), page.user.username);
      setText(byId('user-role'), label('role', page.user.role));
    }
  }

  function renderAll() {
    applyLabels();
    renderFilters();
    renderAlarms();
    renderJournal();
    renderStatus();
  }

  function setLang(next) {
    if (next !== 'zh' && next !== 'en') return;
    page.lang = next;
    // The banner holds the shared labels: switch it first (its own click listener would come after ours).
    if (W) W.setLang(next);
    try {
      localStorage.setItem(LANG_KEY, next);
    } catch (_) {
      // Not remembered, still switched.
    }
    renderAll();
  }

  function start() {
    try {
      const saved = localStorage.getItem(LANG_KEY);
      if (saved === 'zh' || saved === 'en') page.lang = saved;
    } catch (_) {
      // Default language.
    }
    for (const b of document.querySelectorAll('.lang-switch button')) b.addEventListener('click', () => setLang(b.dataset.lang));
    for (const id of ['f-region', 'f-priority', 'f-state', 'f-class', 'f-sort']) byId(id).addEventListener('change', renderAlarms);
    byId('filters').addEventListener('submit', (e) => e.preventDefault());
    byId('rows').addEventListener('click', onRowsClick);
    byId('rows').addEventListener('change', onRowsChange);
    byId('select-all').addEventListener('change', selectAll);
    byId('ack-selected').addEventListener('click', acknowledgeSelected);
    byId('act-form').addEventListener('submit', submitDialog);
    byId('ad-cancel').addEventListener('click', closeDialog);
    byId('jfilters').addEventListener('submit', (e) => {
      e.preventDefault();
      loadJournal(false);
    });
    byId('j-older').addEventListener('click', () => loadJournal(true));
    if (W) {
      W.onChange((msg) => {
        if (msg.type === 'lang') return;
        renderFilters();
        renderAlarms();
      });
    }
    renderAll();
    fetch('/api/me', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } })
      .then((res) => {
        if (res.status === 401) {
          location.href = '/login';
          return null;
        }
        return res.ok ? res.json() : null;
      })
      .then((me) => {
        if (me) page.user = me;
        document.body.dataset.role = page.user ? page.user.role : '';
        renderAll();
        return refetch();
      })
      .then(() => {
        document.body.dataset.ready = '1';
      })
      .catch(() => undefined);
    loadJournal(false);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
