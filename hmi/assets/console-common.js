/*
 * Shared by the trends page and the device pages (issue 9 §4), and by the overview's region roll-up: the
 * language (zh-CN first, English switch, remembered under the same key as the HMI), a JSON fetch helper,
 * number and time formatting, and the one rule of what is abnormal about a device (`WW.abnormal`), so the
 * overview's region tiles and the device list's "only abnormal" filter always agree.
 *
 * It defines `window.WW` and does nothing else until a page calls `WW.page(...)`. Text only: no markup from
 * the server is ever inserted.
 */
'use strict';
(function () {
  const TEXT = {
    zh: {
      language: '语言', back: '监控总览', trends_link: '趋势', devices_link: '设备列表', alarms_link: '报警',
      usage_link: '用水量', user: '用户', loading: '加载中…',
      network: '无法连接服务器，请检查网络后重试', failed: '请求失败（HTTP {status}）：{error}',
      unauthenticated: '登录已失效，请重新登录',
      kind_concentrator: '集中器', kind_logger: '水质仪', kind_valve: '远程阀门', kind_cjt188_gateway: 'CJ/T 188 网关',
      kind_cjt188_line: 'CJ/T 188 总线', kind_mqtt_group: 'MQTT 表组', kind_hj212_station: 'HJ 212 水质站',
      ab_comm: '通信中断', ab_meter_comm: '表计通信中断', ab_quality: '水质超限', ab_valve_fault: '阀门故障',
      ab_magnetic_tamper: '磁干扰', ab_reverse_flow: '倒流', ab_battery_low: '电池欠压', ab_meter_fault: '表计故障',
      ab_meter_valve_fault: '表阀故障', ab_none: '正常',
      rollup_link: '异常设备 {n}', rollup_none: '无异常',
      p_free_chlorine: '游离氯', p_turbidity: '浑浊度', p_ph: 'pH', p_chlorine: '余氯', p_temperature: '水温',
      p_conductivity: '电导率', p_cod: '化学需氧量', p_ammonia: '氨氮', p_dissolved_oxygen: '溶解氧',
    },
    en: {
      language: 'Language', back: 'Overview', trends_link: 'Trends', devices_link: 'Devices', alarms_link: 'Alarms',
      usage_link: 'Usage', user: 'User', loading: 'Loading…',
      network: 'Cannot reach the server; check the network and try again', failed: 'Request failed (HTTP {status}): {error}',
      unauthenticated: 'Your session ended; sign in again',
      kind_concentrator: 'Concentrator', kind_logger: 'Water-quality logger', kind_valve: 'Remote valve',
      kind_cjt188_gateway: 'CJ/T 188 gateway', kind_cjt188_line: 'CJ/T 188 line', kind_mqtt_group: 'MQTT meter group',
      kind_hj212_station: 'HJ 212 station',
      ab_comm: 'Comm lost', ab_meter_comm: 'Meter comm lost', ab_quality: 'Quality out of limits', ab_valve_fault: 'Valve fault',
      ab_magnetic_tamper: 'Magnetic tamper', ab_reverse_flow: 'Reverse flow', ab_battery_low: 'Battery low',
      ab_meter_fault: 'Meter fault', ab_meter_valve_fault: 'Meter valve fault', ab_none: 'Normal',
      rollup_link: 'Abnormal devices {n}', rollup_none: 'Nothing abnormal',
      p_free_chlorine: 'Free chlorine', p_turbidity: 'Turbidity', p_ph: 'pH', p_chlorine: 'Residual chlorine',
      p_temperature: 'Temperature', p_conductivity: 'Conductivity', p_cod: 'COD', p_ammonia: 'Ammonia nitrogen',
      p_dissolved_oxygen: 'Dissolved oxygen',
    },
  };
  const LANG_KEY = 'waterworks.lang';
  let lang = 'zh';
  try {
    const saved = localStorage.getItem(LANG_KEY);
    if (saved === 'zh' || saved === 'en') lang = saved;
  } catch (_) {
    // Storage disabled: keep the default.
  }
  let pageText = { zh: {}, en: {} };
  let onRender = null;

  function t(key, vars) {
    let s = pageText[lang][key] ?? TEXT[lang][key] ?? pageText.en[key] ?? TEXT.en[key] ?? key;
    if (vars) s = s.replace(/\{(\w+)\}/g, (m, n) => (n in vars ? String(vars[n]) : m));
    return s;
  }

  // A shared text in a language another script chose (the overview keeps its own language state).
  function tIn(l, key, vars) {
    let s = (TEXT[l] || TEXT.zh)[key] ?? TEXT.en[key] ?? key;
    if (vars) s = s.replace(/\{(\w+)\}/g, (m, n) => (n in vars ? String(vars[n]) : m));
    return s;
  }

  function render() {
    document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
    for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
    for (const e of document.querySelectorAll('[data-i18n-label]')) e.setAttribute('aria-label', t(e.dataset.i18nLabel));
    for (const e of document.querySelectorAll('[data-i18n-placeholder]')) e.placeholder = t(e.dataset.i18nPlaceholder);
    for (const b of document.querySelectorAll('.lang-switch button')) {
      b.setAttribute('aria-pressed', b.dataset.lang === lang ? 'true' : 'false');
    }
    if (pageText[lang].title) document.title = t('title') + ' · ' + (lang === 'zh' ? '智慧水务监控' : 'Waterworks');
    if (onRender) onRender();
  }

  // fetch as JSON; resolves with the body, rejects with {status, body} or {network: true}. A 401 sends the
  // browser to the login page.
  async function api(path) {
    let r;
    try {
      r = await fetch(path, { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
    } catch (_) {
      throw { network: true };
    }
    let body = null;
    try {
      body = await r.json();
    } catch (_) {
      body = null;
    }
    if (r.status === 401) location.assign('/login');
    if (!r.ok) throw { status: r.status, body: body };
    return body;
  }

  function errorText(e) {
    if (!e) return '';
    if (e.network) return t('network');
    if (e.status === 401) return t('unauthenticated');
    const body = e.body || {};
    return t('failed', { status: e.status, error: typeof body.error === 'string' ? body.error : '' });
  }

  // Element builder: h('a', {href: '/x', class: 'y', text: 'z'}, [children]). Text only, never HTML.
  function h(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') e.textContent = String(v);
      else if (k === 'class') e.className = v;
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k === 'hidden') e.hidden = true;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children || []) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const pad = (n) => String(n).padStart(2, '0');

  // Local wall-clock time, as the control room reads it.
  function fmtTime(ms, withSeconds) {
    if (num(ms) === null) return '—';
    const d = new Date(ms);
    const s = d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + pad(d.getHours()) + ':' + pad(d.getMinutes());
    return withSeconds ? s + ':' + pad(d.getSeconds()) : s;
  }

  function fmtValue(v) {
    if (num(v) === null) return '—';
    const a = Math.abs(v);
    return a >= 1000 ? v.toFixed(1) : a >= 10 ? v.toFixed(2) : v.toFixed(3);
  }

  // A uPlot time axis in 24-hour local time, as the control room reads it: seconds on short spans, the date
  // on long ones.
  function timeAxis() {
    return {
      stroke: '#333',
      grid: { stroke: '#ddd' },
      values: (u, splits) => {
        const span = (u.scales.x.max - u.scales.x.min) * 1000;
        return splits.map((s) => {
          const d = new Date(s * 1000);
          const hm = pad(d.getHours()) + ':' + pad(d.getMinutes());
          if (span <= 600e3) return hm + ':' + pad(d.getSeconds());
          if (span <= 86400e3) return hm;
          return pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + (span <= 10 * 86400e3 ? ' ' + hm : '');
        });
      },
    };
  }

  const kindText = (kind) => t('kind_' + kind);
  const paramText = (name) => (TEXT.zh['p_' + name] !== undefined ? t('p_' + name) : name);

  // What is abnormal about a device, counted per category (the one rule; see the file comment):
  // comm (the device is comm-lost), meter_comm (meters comm-lost on their own), quality (values outside their
  // limits or flagged so), valve_fault, and the meter status flags. `total` is the number of categories hit.
  const METER_FLAGS = ['magnetic_tamper', 'reverse_flow', 'battery_low', 'meter_fault'];
  function abnormal(d) {
    const out = { comm: 0, meter_comm: 0, quality: 0, valve_fault: 0, magnetic_tamper: 0, reverse_flow: 0,
      battery_low: 0, meter_fault: 0, meter_valve_fault: 0, total: 0 };
    if (!d || typeof d !== 'object') return out;
    const comm = d.comm && typeof d.comm === 'object' ? d.comm : {};
    if (comm.comm_lost) out.comm = 1;
    for (const p of Array.isArray(d.values) ? d.values : []) {
      if (!p) continue;
      const flags = Array.isArray(p.flags) ? p.flags : [];
      const v = num(p.value);
      const low = num(p.low);
      const high = num(p.high);
      if (flags.includes('low') || flags.includes('high') || (v !== null && ((low !== null && v < low) || (high !== null && v > high)))) {
        out.quality++;
      }
    }
    const valve = d.valve && typeof d.valve === 'object' ? d.valve : null;
    if (valve && (valve.state === 'fault' || valve.fault)) out.valve_fault = 1;
    for (const m of Array.isArray(d.meters) ? d.meters : []) {
      if (!m) continue;
      if (m.comm_lost) out.meter_comm++;
      const status = Array.isArray(m.status) ? m.status : [];
      for (const f of METER_FLAGS) if (status.includes(f)) out[f]++;
      if (status.includes('valve_fault')) out.meter_valve_fault++;
    }
    for (const k of Object.keys(out)) if (k !== 'total' && out[k] > 0) out.total++;
    return out;
  }
  const ABNORMAL_KEYS = ['comm', 'meter_comm', 'quality', 'valve_fault', 'magnetic_tamper', 'reverse_flow',
    'battery_low', 'meter_fault', 'meter_valve_fault'];

  // A page: its own texts, its render function; wires the language switch and renders once.
  function page(text, render_) {
    pageText = text;
    onRender = render_;
    for (const b of document.querySelectorAll('.lang-switch button')) {
      b.addEventListener('click', () => {
        lang = b.dataset.lang === 'en' ? 'en' : 'zh';
        try {
          localStorage.setItem(LANG_KEY, lang);
        } catch (_) {
          // Not remembered; fine.
        }
        render();
      });
    }
    api('/api/me').then((me) => {
      const name = document.getElementById('user-name');
      if (name && me) name.textContent = me.username;
    }, () => {});
    render();
  }

  window.WW = {
    t: t, tIn: tIn, lang: () => lang, render: render, api: api, errorText: errorText, h: h, num: num, fmtTime: fmtTime,
    fmtValue: fmtValue, timeAxis: timeAxis, kindText: kindText, paramText: paramText, abnormal: abnormal, ABNORMAL_KEYS: ABNORMAL_KEYS,
    page: page,
  };
})();
