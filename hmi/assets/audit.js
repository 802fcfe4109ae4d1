/*
 * Waterworks audit journal page (/audit, admins only; issue 8 §4).
 *
 * Reads GET /api/audit with the filters of the form, newest first, one page at a time: "older" continues
 * from the page's X-Next-Before header (the sequence number where the server stopped), "newer" goes back
 * through the cursors already seen. Every label comes from the dictionary below (zh-CN first, English
 * switch, the choice kept like the HMI's). No inline script; text is only ever set with textContent.
 */
(() => {
  'use strict';

  const I18N = {
    zh: {
      title: '审计日志',
      page_title: '审计日志 · 智慧水务监控',
      back: '返回监控总览',
      user: '用户',
      language: '语言',
      f_actor: '操作人',
      f_action: '动作',
      f_target: '对象',
      f_ok: '结果',
      f_from: '从',
      f_to: '到',
      all: '全部',
      ok_true: '成功',
      ok_false: '失败/拒绝',
      search: '查询',
      clear: '清除',
      prefix_hint: '以 * 结尾按前缀匹配，例如 valve.*',
      c_time: '时间',
      c_actor: '操作人',
      c_action: '动作',
      c_target: '对象',
      c_ok: '结果',
      c_detail: '详情',
      paging: '翻页',
      newest: '最新',
      newer: '较新',
      older: '较早',
      loading: '加载中…',
      empty: '没有符合条件的记录',
      empty_more: '本段没有符合条件的记录，可点击“较早”继续查找',
      shown: '第 {page} 页，{n} 条',
      times: '共 {n} 次，最后 {last}',
      forbidden: '只有管理员可以查看审计日志',
      failed: '加载失败：{msg}',
      bad_time: '时间格式不正确',
      actions: {
        'login': '登录',
        'logout': '退出登录',
        'login.failure': '登录失败',
        'login.throttled': '登录被限流',
        'login.refused': '登录被拒绝',
        'login.basic': 'Basic 认证访问',
        'access.denied': '越权访问被拒绝',
        'server.start': '服务器启动',
        'server.stop': '服务器正常停止',
        'server.crash_detected': '检测到上次异常退出',
        'config.changed': '配置已变更',
        'user.create': '创建用户',
        'valve.open': '开阀结果',
        'valve.close': '关阀结果',
        'valve.open.requested': '开阀请求',
        'valve.close.requested': '关阀请求',
        'valve.open.interrupted': '开阀被中断',
        'valve.close.interrupted': '关阀被中断',
        'valve.open.refused': '开阀被拒绝',
        'valve.close.refused': '关阀被拒绝',
        'valve.open.expired': '开阀已过期',
        'valve.close.expired': '关阀已过期',
        'valve.reset': '阀门故障复位',
      },
    },
    en: {
      title: 'Audit journal',
      page_title: 'Audit journal · Waterworks',
      back: 'Back to the overview',
      user: 'User',
      language: 'Language',
      f_actor: 'Actor',
      f_action: 'Action',
      f_target: 'Target',
      f_ok: 'Outcome',
      f_from: 'From',
      f_to: 'To',
      all: 'All',
      ok_true: 'Succeeded',
      ok_false: 'Failed / refused',
      search: 'Search',
      clear: 'Clear',
      prefix_hint: 'End with * to match a prefix, e.g. valve.*',
      c_time: 'Time',
      c_actor: 'Actor',
      c_action: 'Action',
      c_target: 'Target',
      c_ok: 'Outcome',
      c_detail: 'Detail',
      paging: 'Paging',
      newest: 'Newest',
      newer: 'Newer',
      older: 'Older',
      loading: 'Loading…',
      empty: 'No matching entries',
      empty_more: 'No matching entries in this stretch; press "Older" to look further back',
      shown: 'Page {page}, {n} entries',
      times: '{n} times, last {last}',
      forbidden: 'Only admins may read the audit journal',
      failed: 'Could not load: {msg}',
      bad_time: 'The time is not valid',
      actions: {
        'login': 'Login',
        'logout': 'Logout',
        'login.failure': 'Login failed',
        'login.throttled': 'Login throttled',
        'login.refused': 'Login refused',
        'login.basic': 'HTTP Basic access',
        'access.denied': 'Access denied',
        'server.start': 'Server started',
        'server.stop': 'Server stopped cleanly',
        'server.crash_detected': 'Previous run crashed',
        'config.changed': 'Configuration changed',
        'user.create': 'User created',
        'valve.open': 'Open: result',
        'valve.close': 'Close: result',
        'valve.open.requested': 'Open requested',
        'valve.close.requested': 'Close requested',
        'valve.open.interrupted': 'Open interrupted',
        'valve.close.interrupted': 'Close interrupted',
        'valve.open.refused': 'Open refused',
        'valve.close.refused': 'Close refused',
        'valve.open.expired': 'Open expired',
        'valve.close.expired': 'Close expired',
        'valve.reset': 'Valve fault reset',
      },
    },
  };

  const LANG_KEY = 'waterworks.lang';
  const PAGE = 50;

  let lang = loadLang();
  const state = {
    entries: [],
    // The `before` cursor of the page shown (null: the newest), the cursors of the newer pages seen, and
    // where the next older page starts (null: none).
    cursor: null,
    newer: [],
    next: null,
    filter: {},
    status: null,
    loading: false,
    user: null,
  };

  function loadLang() {
    try {
      const saved = localStorage.getItem(LANG_KEY);
      if (saved === 'zh' || saved === 'en') return saved;
    } catch (_) {
      // Storage may be disabled; the default language is fine.
    }
    return 'zh';
  }

  function t(key, vars) {
    let s = I18N[lang][key];
    if (s === undefined) s = I18N.en[key];
    if (s === undefined) s = key;
    if (vars) s = s.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
    return s;
  }

  const byId = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  const pad = (n) => String(n).padStart(2, '0');
  function fmtTime(ms) {
    const d = new Date(ms);
    if (Number.isNaN(d.getTime())) return String(ms);
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
      pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }

  function actionLabel(action) {
    const label = I18N[lang].actions[action];
    return label === undefined ? action : label;
  }

  function applyStaticLabels() {
    document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
    document.title = t('page_title');
    for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
    for (const e of document.querySelectorAll('[data-i18n-label]')) e.setAttribute('aria-label', t(e.dataset.i18nLabel));
    for (const b of document.querySelectorAll('.lang-switch button')) {
      b.setAttribute('aria-pressed', b.dataset.lang === lang ? 'true' : 'false');
    }
    const list = byId('actions');
    list.replaceChildren();
    for (const [code, label] of Object.entries(I18N[lang].actions)) {
      const o = document.createElement('option');
      o.value = code;
      o.label = label;
      list.append(o);
    }
  }

  function setLang(next) {
    if (next !== 'zh' && next !== 'en') return;
    lang = next;
    try {
      localStorage.setItem(LANG_KEY, next);
    } catch (_) {
      // Not remembered, but still switched.
    }
    applyStaticLabels();
    render();
  }

  function cell(label, child) {
    const td = el('td');
    td.dataset.label = label;
    td.append(child);
    return td;
  }

  function renderRows() {
    const rows = byId('rows');
    rows.replaceChildren();
    for (const e of state.entries) {
      const tr = el('tr');
      tr.dataset.seq = String(e.seq);
      tr.className = e.ok ? 'ok' : 'failed';
      const time = el('time', null, fmtTime(e.ts));
      time.dateTime = new Date(e.ts).toISOString();
      const when = el('span');
      when.append(time);
      if (e.times > 1) when.append(el('span', 'times', t('times', { n: e.times, last: fmtTime(e.last_ts) })));
      tr.append(cell(t('c_time'), when));
      tr.append(cell(t('c_actor'), el('span', 'actor', e.actor)));
      const action = el('span', 'action');
      action.append(el('span', 'action-label', actionLabel(e.action)));
      if (actionLabel(e.action) !== e.action) action.append(el('code', 'action-code', e.action));
      tr.append(cell(t('c_action'), action));
      tr.append(cell(t('c_target'), el('span', 'target', e.target)));
      tr.append(cell(t('c_ok'), el('span', 'outcome ' + (e.ok ? 'is-ok' : 'is-failed'), t(e.ok ? 'ok_true' : 'ok_false'))));
      tr.append(cell(t('c_detail'), el('span', 'detail', e.detail)));
      rows.append(tr);
    }
  }

  function renderStatus() {
    const s = byId('status');
    const st = state.status;
    s.className = 'status' + (st && st.error ? ' error' : '');
    if (state.loading) s.textContent = t('loading');
    else if (st && st.error) s.textContent = st.key === 'failed' ? t('failed', { msg: st.msg }) : t(st.key);
    else if (state.entries.length === 0) s.textContent = state.next !== null ? t('empty_more') : t('empty');
    else s.textContent = '';
  }

  function render() {
    renderRows();
    renderStatus();
    byId('newer').disabled = state.newer.length === 0 || state.loading;
    byId('newest').disabled = state.cursor === null || state.loading;
    byId('older').disabled = state.next === null || state.loading;
    byId('page-info').textContent = t('shown', { page: state.newer.length + 1, n: state.entries.length });
    if (state.user) byId('user-name').textContent = state.user;
  }

  // The filters of the form, or null (with the status set) when a time does not parse.
  function readFilter() {
    const f = {};
    for (const name of ['actor', 'action', 'target']) {
      const v = byId('f-' + name).value.trim();
      if (v) f[name] = v;
    }
    const ok = byId('f-ok').value;
    if (ok === 'true' || ok === 'false') f.ok = ok;
    for (const name of ['from', 'to']) {
      const v = byId('f-' + name).value;
      if (!v) continue;
      const ms = new Date(v).getTime();
      if (Number.isNaN(ms)) {
        state.status = { error: true, key: 'bad_time' };
        return null;
      }
      f[name] = String(name === 'to' ? ms + 999 : ms);
    }
    return f;
  }

  function load(cursor) {
    const params = new URLSearchParams(state.filter);
    params.set('limit', String(PAGE));
    if (cursor !== null) params.set('before', String(cursor));
    state.loading = true;
    state.status = null;
    render();
    return fetch('/api/audit?' + params.toString(), {
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json' },
    })
      .then((res) => {
        if (res.status === 401) {
          location.href = '/login';
          return null;
        }
        if (res.status === 403) {
          state.status = { error: true, key: 'forbidden' };
          return null;
        }
        return res.json().then((body) => {
          if (!res.ok) {
            state.status = { error: true, key: 'failed', msg: (body && body.error) || String(res.status) };
            return null;
          }
          const next = res.headers.get('X-Next-Before');
          state.entries = Array.isArray(body) ? body : [];
          state.cursor = cursor;
          state.next = next && /^\d+$/.test(next) ? Number(next) : null;
          return null;
        });
      })
      .catch((e) => {
        state.status = { error: true, key: 'failed', msg: String(e && e.message ? e.message : e) };
      })
      .then(() => {
        state.loading = false;
        render();
      });
  }

  function search() {
    const f = readFilter();
    if (f === null) {
      render();
      return;
    }
    state.filter = f;
    state.newer = [];
    load(null);
  }

  function start() {
    applyStaticLabels();
    for (const b of document.querySelectorAll('.lang-switch button')) {
      b.addEventListener('click', () => setLang(b.dataset.lang));
    }
    byId('filters').addEventListener('submit', (e) => {
      e.preventDefault();
      search();
    });
    byId('clear').addEventListener('click', () => {
      byId('filters').reset();
      search();
    });
    byId('older').addEventListener('click', () => {
      if (state.next === null) return;
      state.newer.push(state.cursor);
      load(state.next);
    });
    byId('newer').addEventListener('click', () => {
      if (state.newer.length === 0) return;
      load(state.newer.pop());
    });
    byId('newest').addEventListener('click', () => {
      state.newer = [];
      load(null);
    });
    fetch('/api/me', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } })
      .then((res) => (res.ok ? res.json() : null))
      .then((me) => {
        if (me && typeof me.username === 'string') {
          state.user = me.username;
          render();
        }
      })
      .catch(() => {});
    search();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
