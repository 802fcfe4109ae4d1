/*
 * Waterworks alarm KPI page (/alarm-kpi; issue 9 §3, ISA-18.2 / EEMUA 191).
 *
 * Reads GET /api/alarms/kpi?window=… and shows: counts now (standing, unacknowledged, stale, chattering,
 * shelved, suppressed, out of service); per operator position the annunciation rate per 10 minutes and per
 * hour (average and peak) against the targets, with a uPlot chart of every 10-minute bucket and the two
 * target lines; the ten most frequent alarms, the chattering and the stale ones. Every label comes from the
 * dictionary below (zh-CN first, English switch, the choice kept like the HMI's). No inline script; text is
 * only ever set with textContent. Test hooks: body[data-loaded], [data-kpi] .n, [data-position] with
 * data-avg-ok / data-peak-ok, table rows [data-alarm].
 */
(() => {
  'use strict';

  const I18N = {
    zh: {
      title: '报警绩效',
      page_title: '报警绩效 · 智慧水务监控',
      back: '返回监控总览',
      language: '语言',
      window: '统计时段',
      w_1h: '1 小时', w_24h: '24 小时', w_7d: '7 天', w_30d: '30 天',
      now: '当前',
      k_standing: '持续报警', k_unack: '未确认', k_stale: '陈旧（超过 24 小时）', k_chatter: '振荡报警',
      k_shelved: '已搁置', k_suppressed: '设计抑制', k_oos: '停用',
      h_frequent: '最频繁的 10 个报警',
      h_chatter: '振荡报警（1 分钟内触发 3 次及以上）',
      h_stale: '陈旧报警（持续超过 24 小时）',
      c_alarm: '报警', c_region: '区域', c_activations: '触发次数', c_per_min: '每分钟最多',
      c_priority: '优先级', c_since: '开始时间',
      note: '目标（ISA-18.2 / EEMUA 191）：每个操作岗位平均每 10 分钟约 1 条报警；任意 10 分钟少于 10 条（10 条及以上为报警泛滥）。',
      position: '操作岗位 {name}',
      all_regions: '全部区域',
      regions: '区域：{list}',
      avg10: '平均每 10 分钟', peak10: '10 分钟峰值', avg_h: '平均每小时', peak_h: '小时峰值',
      floods: '泛滥时段', total: '报警总数', last10: '最近 10 分钟',
      target_avg: '目标 ≤ {n}', target_peak: '目标 < {n}',
      at: '于 {t}',
      series_count: '每 10 分钟报警数', series_avg: '平均目标', series_flood: '泛滥线',
      none: '无',
      loading: '加载中…',
      loaded: '统计时段 {from} 至 {to}',
      truncated: '报警日志过多，仅统计了最近的部分记录：数字为下限。',
      failed: '加载失败：{msg}',
    },
    en: {
      title: 'Alarm KPIs',
      page_title: 'Alarm KPIs · Waterworks',
      back: 'Back to the overview',
      language: 'Language',
      window: 'Window',
      w_1h: '1 hour', w_24h: '24 hours', w_7d: '7 days', w_30d: '30 days',
      now: 'Now',
      k_standing: 'Standing', k_unack: 'Unacknowledged', k_stale: 'Stale (over 24 h)', k_chatter: 'Chattering',
      k_shelved: 'Shelved', k_suppressed: 'Suppressed by design', k_oos: 'Out of service',
      h_frequent: 'Ten most frequent alarms',
      h_chatter: 'Chattering alarms (3 or more activations within a minute)',
      h_stale: 'Stale alarms (standing over 24 h)',
      c_alarm: 'Alarm', c_region: 'Region', c_activations: 'Activations', c_per_min: 'Most in a minute',
      c_priority: 'Priority', c_since: 'Since',
      note: 'Targets (ISA-18.2 / EEMUA 191): about 1 alarm per 10 minutes per operator position on average; fewer than 10 in any 10 minutes (10 or more is a flood).',
      position: 'Operator position {name}',
      all_regions: 'all regions',
      regions: 'Regions: {list}',
      avg10: 'Average per 10 min', peak10: 'Peak in 10 min', avg_h: 'Average per hour', peak_h: 'Peak in an hour',
      floods: 'Flood periods', total: 'Alarms', last10: 'Last 10 min',
      target_avg: 'target ≤ {n}', target_peak: 'target < {n}',
      at: 'at {t}',
      series_count: 'Alarms per 10 min', series_avg: 'Average target', series_flood: 'Flood line',
      none: 'None',
      loading: 'Loading…',
      loaded: 'Window {from} to {to}',
      truncated: 'The alarm journal is too large: only its newest records were counted, so the figures are lower bounds.',
      failed: 'Could not load: {msg}',
    },
  };

  const LANG_KEY = 'waterworks.lang';
  const WINDOWS = ['1h', '24h', '7d', '30d'];
  let lang = loadLang();
  let windowName = '24h';
  let data = null;
  let error = null;
  let charts = [];

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
      pad(d.getHours()) + ':' + pad(d.getMinutes());
  }
  const fmtRate = (x) => (Math.round(x * 100) / 100).toString();

  // Alarm class and priority names are the banner's (loaded on every page before this script), so every page
  // names an alarm alike; the banner follows this page's language switch.
  const named = (table, key) => (window.WaterworksAlarms ? window.WaterworksAlarms.label(table, key) : key);

  function alarmLabel(a) {
    const cls = named('class', a.class);
    return cls + ' · ' + a.device + (a.detail ? ' · ' + a.detail : '');
  }

  function applyStaticLabels() {
    document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
    document.title = t('page_title');
    for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
    for (const e of document.querySelectorAll('[data-i18n-label]')) e.setAttribute('aria-label', t(e.dataset.i18nLabel));
    for (const b of document.querySelectorAll('.lang-switch button')) {
      b.setAttribute('aria-pressed', b.dataset.lang === lang ? 'true' : 'false');
    }
    for (const b of document.querySelectorAll('.windows button')) {
      b.setAttribute('aria-pressed', b.dataset.window === windowName ? 'true' : 'false');
    }
  }

  function setStatus(text, bad) {
    const s = byId('status');
    s.textContent = text;
    s.classList.toggle('bad', !!bad);
  }

  function renderTiles() {
    for (const tile of document.querySelectorAll('[data-kpi]')) {
      const v = data[tile.dataset.kpi];
      tile.querySelector('.n').textContent = String(v);
      const bad = (tile.dataset.kpi === 'stale' || tile.dataset.kpi === 'chattering_count') && v > 0;
      tile.classList.toggle('bad', bad);
    }
  }

  function figure(label, value, note, ok) {
    const f = el('div', 'figure');
    if (ok === false) f.classList.add('bad');
    f.append(el('span', 'fv', value), el('span', 'fl', label));
    if (note) f.append(el('span', 'fn', note));
    return f;
  }

  function renderPositions() {
    for (const c of charts) c.destroy();
    charts = [];
    const box = byId('positions');
    box.replaceChildren();
    const tg = data.targets;
    for (const p of data.positions) {
      const card = el('article', 'position');
      card.dataset.position = p.name;
      card.dataset.avgOk = String(p.avg_ok);
      card.dataset.peakOk = String(p.peak_ok);
      card.dataset.peak = String(p.peak_per_10min);
      card.append(el('h2', null, t('position', { name: p.name })));
      card.append(el('p', 'regions', t('regions', { list: p.regions.length ? p.regions.join(', ') : t('all_regions') })));
      const figs = el('div', 'figures');
      figs.append(
        figure(t('avg10'), fmtRate(p.avg_per_10min), t('target_avg', { n: tg.avg_per_10min }), p.avg_ok),
        figure(t('peak10'), String(p.peak_per_10min),
          t('target_peak', { n: tg.flood_per_10min }) + (p.peak_10min_at ? ' · ' + t('at', { t: fmtTime(p.peak_10min_at) }) : ''),
          p.peak_ok),
        figure(t('avg_h'), fmtRate(p.avg_per_hour)),
        figure(t('peak_h'), String(p.peak_per_hour), p.peak_hour_at ? t('at', { t: fmtTime(p.peak_hour_at) }) : ''),
        figure(t('floods'), String(p.floods), null, p.floods === 0),
        figure(t('total'), String(p.total)),
        figure(t('last10'), String(p.last_10min), null, p.last_10min < tg.flood_per_10min),
      );
      card.append(figs);
      const chart = el('div', 'chart');
      card.append(chart);
      box.append(card);
      drawChart(chart, p);
    }
  }

  function drawChart(target, p) {
    if (typeof window.uPlot !== 'function') return;
    const start = data.buckets_from / 1000;
    const xs = p.per_10min.map((_, i) => start + i * 600);
    const avg = xs.map(() => data.targets.avg_per_10min);
    const flood = xs.map(() => data.targets.flood_per_10min);
    const bars = window.uPlot.paths && window.uPlot.paths.bars ? window.uPlot.paths.bars({ size: [0.9, 40] }) : undefined;
    const opts = {
      width: Math.max(200, target.clientWidth),
      height: 220,
      legend: { show: true },
      scales: { y: { range: (u, min, max) => [0, Math.max(max, data.targets.flood_per_10min + 1)] } },
      series: [
        {},
        { label: t('series_count'), stroke: '#3b3b3b', fill: 'rgba(80,80,80,0.35)', paths: bars, points: { show: false } },
        { label: t('series_avg'), stroke: '#1d6b2a', dash: [6, 4], points: { show: false } },
        { label: t('series_flood'), stroke: '#d0101a', dash: [6, 4], points: { show: false } },
      ],
    };
    charts.push(new window.uPlot(opts, [xs, p.per_10min, avg, flood], target));
  }

  function renderTable(id, rows, cells) {
    const body = byId(id).querySelector('tbody');
    body.replaceChildren();
    if (!rows.length) {
      const tr = el('tr', 'empty');
      const td = el('td', null, t('none'));
      td.colSpan = 4;
      tr.append(td);
      body.append(tr);
      return;
    }
    const heads = [...byId(id).querySelectorAll('thead th')].map((th) => th.textContent);
    for (const r of rows) {
      const tr = el('tr');
      tr.dataset.alarm = r.id;
      cells(r).forEach((text, i) => {
        const td = el('td', null, text);
        td.dataset.label = heads[i] || '';
        tr.append(td);
      });
      body.append(tr);
    }
  }

  function splitId(id) {
    const [cls, device, ...rest] = id.split('~');
    return { class: cls, device, detail: rest.join('~') };
  }

  function render() {
    applyStaticLabels();
    if (error) {
      setStatus(t('failed', { msg: error }), true);
      return;
    }
    if (!data) {
      setStatus(t('loading'));
      return;
    }
    setStatus(data.truncated ? t('truncated') : t('loaded', { from: fmtTime(data.from), to: fmtTime(data.to) }), data.truncated);
    renderTiles();
    renderPositions();
    const counts = (a) => [alarmLabel(a), a.region, String(a.activations), String(a.max_per_minute)];
    renderTable('frequent', data.frequent, counts);
    renderTable('chattering', data.chattering, counts);
    renderTable('stale', data.stale_alarms, (s) => [
      alarmLabel(splitId(s.id)), s.region, named('priority', s.priority), fmtTime(s.raised_at),
    ]);
  }

  async function load() {
    error = null;
    document.body.removeAttribute('data-loaded');
    render();
    try {
      const r = await fetch('/api/alarms/kpi?window=' + encodeURIComponent(windowName), {
        headers: { Accept: 'application/json' }, credentials: 'same-origin',
      });
      if (r.status === 401) {
        location.href = '/login';
        return;
      }
      const body = await r.json().catch(() => null);
      if (!r.ok) throw new Error((body && body.error) || String(r.status));
      data = body;
    } catch (e) {
      error = e.message || String(e);
      data = null;
    }
    render();
    document.body.dataset.loaded = windowName;
  }

  function setLang(next) {
    if (next !== 'zh' && next !== 'en') return;
    lang = next;
    if (window.WaterworksAlarms) window.WaterworksAlarms.setLang(next);
    try {
      localStorage.setItem(LANG_KEY, next);
    } catch (_) {
      // Not remembered, but still switched.
    }
    render();
  }

  let resizeTimer = null;
  function onResize() {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const c of charts) c.setSize({ width: Math.max(200, c.root.parentElement.clientWidth), height: 220 });
    }, 100);
  }

  document.addEventListener('DOMContentLoaded', () => {
    for (const b of document.querySelectorAll('.lang-switch button')) b.addEventListener('click', () => setLang(b.dataset.lang));
    for (const b of document.querySelectorAll('.windows button')) {
      b.addEventListener('click', () => {
        if (!WINDOWS.includes(b.dataset.window)) return;
        windowName = b.dataset.window;
        load();
      });
    }
    window.addEventListener('resize', onResize);
    load();
  });
})();
