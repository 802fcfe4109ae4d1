/*
 * Waterworks alarm settings page (/alarm-settings, admins only; issue 9 §1, §5).
 *
 * Loads GET /api/alarm-settings into a form: per class enabled and priority (the top-level `class` table),
 * per site type the quality deadband, delays and high-high/low-low factors, and the per-device overrides as
 * JSON. Saving sends the whole settings with PUT; the server checks them like the configuration's [alarms]
 * and answers 400 with every problem and its key, which the page shows. What the form does not show (the
 * sites' absolute levels and class overrides) is kept as loaded. Every label comes from the dictionary
 * below (zh-CN first, English switch, the choice kept like the HMI's). No inline script; text is only set
 * with textContent.
 */
(() => {
  'use strict';

  const CLASSES = [
    'quality_high_high', 'quality_high', 'quality_low', 'quality_low_low', 'sensor_untrusted', 'comm_lost',
    'meter_comm_lost', 'meter_tamper', 'meter_reverse_flow', 'meter_fault', 'meter_battery_low',
    'meter_valve_fault', 'volume_fell', 'volume_rollover', 'volume_suspected_swap', 'valve_command_failed',
    'valve_uncommanded', 'abnormal_usage', 'night_flow', 'zone_leakage',
  ];
  const SITES = ['plant_outlet', 'network_end', 'source'];
  const SITE_FIELDS = ['deadband_percent', 'on_delay_s', 'off_delay_s', 'high_high_factor', 'low_low_factor'];
  const INTEGER = { on_delay_s: true, off_delay_s: true };

  const I18N = {
    zh: {
      title: '报警设置',
      page_title: '报警设置 · 智慧水务监控',
      back: '返回监控总览',
      user: '用户',
      language: '语言',
      classes: '报警类别',
      classes_hint: '每个类别可停用或改变优先级；留空则使用默认值。',
      sites: '按站点类型（水质）',
      sites_hint: '死区为最小限值的百分比；延时以秒计；高高/低低系数由国标上下限推算。',
      devices: '按设备（JSON）',
      devices_hint: '设备 ID → 覆盖项，例如 {"east-wq": {"low_low": {"free_chlorine": 0.1}}}',
      c_class: '类别',
      c_enabled: '启用',
      c_priority: '优先级',
      c_site: '站点类型',
      c_deadband: '死区 %',
      c_on_delay: '报警延时 s',
      c_off_delay: '恢复延时 s',
      c_hh_factor: '高高系数',
      c_ll_factor: '低低系数',
      save: '保存',
      reload: '重新加载',
      default_priority: '默认（{p}）',
      loading: '加载中…',
      saved: '已保存，立即生效',
      forbidden: '只有管理员可以修改报警设置',
      failed: '保存失败：{msg}',
      load_failed: '加载失败：{msg}',
      bad_json: '设备覆盖项不是有效的 JSON 对象',
      bad_number: '{what} 不是有效数字',
      priority: { low: '低', medium: '中', high: '高', urgent: '紧急' },
      site: { plant_outlet: '出厂水', network_end: '末梢水', source: '水源' },
      class: {
        quality_high_high: '水质超高高限', quality_high: '水质超上限', quality_low: '水质低于下限',
        quality_low_low: '水质低于低低限', sensor_untrusted: '传感器数据不可信', comm_lost: '设备通信中断',
        meter_comm_lost: '水表通信中断', meter_tamper: '水表磁干扰', meter_reverse_flow: '水表倒流',
        meter_fault: '水表故障', meter_battery_low: '水表电池欠压', meter_valve_fault: '表内阀门故障',
        volume_fell: '读数回退', volume_rollover: '读数翻转', volume_suspected_swap: '疑似换表或误读',
        valve_command_failed: '阀门命令失败', valve_uncommanded: '阀门无命令变位', abnormal_usage: '用水异常',
        night_flow: '夜间持续流量', zone_leakage: '分区漏损',
      },
    },
    en: {
      title: 'Alarm settings',
      page_title: 'Alarm settings · Waterworks',
      back: 'Back to the overview',
      user: 'User',
      language: 'Language',
      classes: 'Alarm classes',
      classes_hint: 'Disable a class or change its priority; leave empty for the default.',
      sites: 'By site type (water quality)',
      sites_hint: 'Deadband in percent of the smallest limit; delays in seconds; high-high/low-low factors derive the levels from the GB 5749 limits.',
      devices: 'By device (JSON)',
      devices_hint: 'Device id → overrides, e.g. {"east-wq": {"low_low": {"free_chlorine": 0.1}}}',
      c_class: 'Class',
      c_enabled: 'Enabled',
      c_priority: 'Priority',
      c_site: 'Site type',
      c_deadband: 'Deadband %',
      c_on_delay: 'On delay s',
      c_off_delay: 'Off delay s',
      c_hh_factor: 'High-high factor',
      c_ll_factor: 'Low-low factor',
      save: 'Save',
      reload: 'Reload',
      default_priority: 'Default ({p})',
      loading: 'Loading…',
      saved: 'Saved; in force now',
      forbidden: 'Only admins may change alarm settings',
      failed: 'Not saved: {msg}',
      load_failed: 'Could not load: {msg}',
      bad_json: 'The device overrides are not a JSON object',
      bad_number: '{what} is not a number',
      priority: { low: 'Low', medium: 'Medium', high: 'High', urgent: 'Urgent' },
      site: { plant_outlet: 'Plant outlet', network_end: 'Network end', source: 'Source' },
      class: {
        quality_high_high: 'Quality high-high', quality_high: 'Quality high', quality_low: 'Quality low',
        quality_low_low: 'Quality low-low', sensor_untrusted: 'Sensor untrusted', comm_lost: 'Device comm lost',
        meter_comm_lost: 'Meter comm lost', meter_tamper: 'Meter magnetic tamper',
        meter_reverse_flow: 'Meter reverse flow', meter_fault: 'Meter fault', meter_battery_low: 'Meter battery low',
        meter_valve_fault: 'Meter valve fault', volume_fell: 'Volume fell', volume_rollover: 'Volume rollover',
        volume_suspected_swap: 'Suspected meter swap', valve_command_failed: 'Valve command failed',
        valve_uncommanded: 'Valve moved without command', abnormal_usage: 'Abnormal usage',
        night_flow: 'Night flow', zone_leakage: 'Zone leakage',
      },
    },
  };
  // The built-in default priority of each class (actors::model::AlarmClass::default_priority).
  const DEFAULT_PRIORITY = {
    quality_high_high: 'urgent', quality_low_low: 'urgent', quality_high: 'high', quality_low: 'high',
    comm_lost: 'high', valve_command_failed: 'high', valve_uncommanded: 'high', sensor_untrusted: 'medium',
    meter_tamper: 'medium', meter_reverse_flow: 'medium', meter_valve_fault: 'medium',
    volume_suspected_swap: 'medium', night_flow: 'medium', zone_leakage: 'medium', meter_comm_lost: 'low',
    meter_fault: 'low', meter_battery_low: 'low', volume_fell: 'low', volume_rollover: 'low', abnormal_usage: 'low',
  };

  const LANG_KEY = 'waterworks.lang';
  let lang = loadLang();
  let loaded = {};
  let status = null;

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
  function cell(label, child) {
    const td = el('td');
    td.dataset.label = label;
    td.append(child);
    return td;
  }

  // The form's current values, so a language switch re-renders without losing edits.
  function snapshot() {
    if (!byId('class-rows').children.length) return loaded;
    try {
      return collect();
    } catch (_) {
      return loaded;
    }
  }

  function renderForm(s) {
    const classes = (s && s.class) || {};
    const rows = byId('class-rows');
    rows.replaceChildren();
    for (const c of CLASSES) {
      const cur = classes[c] || {};
      const tr = el('tr');
      tr.dataset.class = c;
      const name = el('span');
      name.append(document.createTextNode(I18N[lang].class[c]), el('code', null, c));
      tr.append(cell(t('c_class'), name));
      const box = el('input');
      box.type = 'checkbox';
      box.name = 'enabled-' + c;
      box.checked = cur.enabled !== false;
      box.setAttribute('aria-label', t('c_enabled') + ' ' + I18N[lang].class[c]);
      tr.append(cell(t('c_enabled'), box));
      const sel = el('select');
      sel.name = 'priority-' + c;
      sel.setAttribute('aria-label', t('c_priority') + ' ' + I18N[lang].class[c]);
      const def = el('option', null, t('default_priority', { p: I18N[lang].priority[DEFAULT_PRIORITY[c]] }));
      def.value = '';
      sel.append(def);
      for (const p of ['low', 'medium', 'high', 'urgent']) {
        const o = el('option', null, I18N[lang].priority[p]);
        o.value = p;
        sel.append(o);
      }
      sel.value = cur.priority || '';
      tr.append(cell(t('c_priority'), sel));
      rows.append(tr);
    }
    const sites = (s && s.site) || {};
    const srows = byId('site-rows');
    srows.replaceChildren();
    const heads = ['c_deadband', 'c_on_delay', 'c_off_delay', 'c_hh_factor', 'c_ll_factor'];
    for (const site of SITES) {
      const cur = sites[site] || {};
      const tr = el('tr');
      tr.dataset.site = site;
      tr.append(cell(t('c_site'), el('span', null, I18N[lang].site[site])));
      SITE_FIELDS.forEach((f, i) => {
        const input = el('input');
        input.type = 'number';
        input.name = site + '-' + f;
        input.step = INTEGER[f] ? '1' : 'any';
        input.min = '0';
        input.value = cur[f] === undefined || cur[f] === null ? '' : String(cur[f]);
        input.setAttribute('aria-label', I18N[lang].site[site] + ' ' + t(heads[i]));
        tr.append(cell(t(heads[i]), input));
      });
      srows.append(tr);
    }
    byId('devices').value = JSON.stringify((s && s.device) || {}, null, 2);
  }

  // The settings the form says, over what was loaded (what the form does not show is kept).
  function collect() {
    const out = JSON.parse(JSON.stringify(loaded || {}));
    const classes = {};
    for (const tr of byId('class-rows').children) {
      const c = tr.dataset.class;
      const keep = Object.assign({}, (loaded.class || {})[c] || {});
      delete keep.enabled;
      delete keep.priority;
      const enabled = tr.querySelector('input').checked;
      const priority = tr.querySelector('select').value;
      if (!enabled) keep.enabled = false;
      if (priority) keep.priority = priority;
      if (Object.keys(keep).length) classes[c] = keep;
    }
    out.class = classes;
    const sites = {};
    for (const tr of byId('site-rows').children) {
      const site = tr.dataset.site;
      const cur = Object.assign({}, (loaded.site || {})[site] || {});
      SITE_FIELDS.forEach((f) => {
        const v = tr.querySelector('input[name="' + site + '-' + f + '"]').value.trim();
        delete cur[f];
        if (v === '') return;
        const n = Number(v);
        if (!Number.isFinite(n)) throw new Error(t('bad_number', { what: I18N[lang].site[site] + ' ' + f }));
        cur[f] = n;
      });
      if (Object.keys(cur).length) sites[site] = cur;
    }
    out.site = sites;
    const text = byId('devices').value.trim();
    let devices = {};
    if (text) {
      try {
        devices = JSON.parse(text);
      } catch (_) {
        throw new Error(t('bad_json'));
      }
      if (devices === null || typeof devices !== 'object' || Array.isArray(devices)) throw new Error(t('bad_json'));
    }
    out.device = devices;
    return out;
  }

  function renderStatus() {
    const s = byId('status');
    s.className = 'status' + (status && status.error ? ' error' : status && status.ok ? ' ok' : '');
    if (!status) s.textContent = '';
    else if (status.key === 'failed' || status.key === 'load_failed') s.textContent = t(status.key, { msg: status.msg });
    else s.textContent = t(status.key);
  }

  function applyStaticLabels() {
    document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
    document.title = t('page_title');
    for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
    for (const e of document.querySelectorAll('[data-i18n-label]')) e.setAttribute('aria-label', t(e.dataset.i18nLabel));
    for (const b of document.querySelectorAll('.lang-switch button')) {
      b.setAttribute('aria-pressed', b.dataset.lang === lang ? 'true' : 'false');
    }
  }

  function setLang(next) {
    if (next !== 'zh' && next !== 'en') return;
    const kept = snapshot();
    lang = next;
    try {
      localStorage.setItem(LANG_KEY, next);
    } catch (_) {
      // Not remembered, but still switched.
    }
    applyStaticLabels();
    renderForm(kept);
    renderStatus();
  }

  function request(method, body) {
    const init = { method, credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch('/api/alarm-settings', init).then((res) => {
      if (res.status === 401) {
        location.href = '/login';
        return new Promise(() => {});
      }
      return res.json().catch(() => ({})).then((json) => ({ res, json }));
    });
  }

  function load() {
    status = { key: 'loading' };
    renderStatus();
    return request('GET').then(({ res, json }) => {
      if (!res.ok) {
        status = { error: true, key: 'load_failed', msg: (json && json.error) || 'HTTP ' + res.status };
      } else {
        loaded = json || {};
        status = null;
        renderForm(loaded);
      }
      renderStatus();
    }).catch((e) => {
      status = { error: true, key: 'load_failed', msg: String(e && e.message ? e.message : e) };
      renderStatus();
    });
  }

  function save(ev) {
    ev.preventDefault();
    let body;
    try {
      body = collect();
    } catch (e) {
      status = { error: true, key: 'failed', msg: e.message };
      renderStatus();
      return;
    }
    byId('save').disabled = true;
    request('PUT', body).then(({ res, json }) => {
      if (res.ok) {
        loaded = json || body;
        renderForm(loaded);
        status = { ok: true, key: 'saved' };
      } else if (res.status === 403) {
        status = { error: true, key: 'forbidden' };
      } else {
        status = { error: true, key: 'failed', msg: (json && json.error) || 'HTTP ' + res.status };
      }
    }).catch((e) => {
      status = { error: true, key: 'failed', msg: String(e && e.message ? e.message : e) };
    }).then(() => {
      byId('save').disabled = false;
      renderStatus();
    });
  }

  function start() {
    applyStaticLabels();
    for (const b of document.querySelectorAll('.lang-switch button')) {
      b.addEventListener('click', () => setLang(b.dataset.lang));
    }
    byId('settings').addEventListener('submit', save);
    byId('reload').addEventListener('click', () => load());
    fetch('/api/me', { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then((r) => (r.ok ? r.json() : null))
      .then((me) => {
        if (me && me.username) byId('user-name').textContent = me.username;
      })
      .catch(() => {});
    renderForm(loaded);
    load();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
