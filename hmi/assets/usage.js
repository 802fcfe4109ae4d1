/*
 * Waterworks usage and zone pages (/usage and /zones; issue 9 §4, R-B1, R-B5). One script for both: the page
 * says which it is in <body data-page>.
 *
 * /usage reads GET /api/usage for a meter or a region, by hour, day or month, and shows this period as bars
 * and the same period last year as a line (uPlot, vendored), then the table with the change and how much of
 * each bucket had readings (a gap is not zero use). /zones reads GET /api/zones and shows a tile per zone:
 * its latest leakage rate against its threshold and a chart of the rate per period.
 *
 * Every label comes from the dictionary below (zh-CN first, English switch, remembered like the HMI's). No
 * inline script; text is only ever set with textContent.
 */
(() => {
  'use strict';

  const I18N = {
    zh: {
      usage_title: '用水量',
      zones_title: '分区漏损',
      usage_page_title: '用水量 · 智慧水务监控',
      zones_page_title: '分区漏损 · 智慧水务监控',
      back: '返回监控总览',
      zones_link: '分区漏损',
      usage_link: '用水量',
      language: '语言',
      target: '对象',
      meter: '水表',
      region: '片区',
      id: '编号',
      bucket: '粒度',
      hour: '小时',
      day: '日',
      month: '月',
      from: '从',
      to: '到',
      show: '查询',
      chart_label: '用水量图表',
      c_period: '时段',
      c_m3: '用水量 (m³)',
      c_last_year: '去年同期 (m³)',
      c_change: '同比',
      c_coverage: '数据覆盖',
      this_period: '本期',
      last_year: '去年同期',
      loading: '加载中…',
      failed: '加载失败：{msg}',
      need_id: '请输入水表或片区编号',
      bad_dates: '请选择正确的起止日期',
      meter_title: '水表 {id} 的用水量（{bucket}，{tz}）',
      region_title: '片区 {id} 的用水量（{n} 块表，{bucket}，{tz}）',
      incomplete: '数据不全',
      no_zones: '尚未配置分区（配置文件中的 [[zone]]）',
      latest: '最近一期漏损率',
      threshold: '阈值 {t}%',
      above: '超过阈值',
      below: '正常',
      not_judged: '数据不全，未判定',
      no_periods: '尚无结果（每期结束后计算）',
      period_of: '{start} 至 {end}',
      masters: '总表：{list}',
      members: '用户表 {n} 块',
      rate: '漏损率 %',
      rate_chart: '{name} 漏损率图表',
      period_day: '按日',
      period_month: '按月',
      so_far: '本期至今（估算）：{rate}%',
    },
    en: {
      usage_title: 'Water usage',
      zones_title: 'Zone leakage',
      usage_page_title: 'Water usage · Waterworks',
      zones_page_title: 'Zone leakage · Waterworks',
      back: 'Back to the overview',
      zones_link: 'Zone leakage',
      usage_link: 'Water usage',
      language: 'Language',
      target: 'Of',
      meter: 'Meter',
      region: 'Region',
      id: 'Id',
      bucket: 'By',
      hour: 'Hour',
      day: 'Day',
      month: 'Month',
      from: 'From',
      to: 'To',
      show: 'Show',
      chart_label: 'Usage chart',
      c_period: 'Period',
      c_m3: 'Usage (m³)',
      c_last_year: 'Last year (m³)',
      c_change: 'Change',
      c_coverage: 'Data coverage',
      this_period: 'This period',
      last_year: 'Same period last year',
      loading: 'Loading…',
      failed: 'Could not load: {msg}',
      need_id: 'Enter a meter or region id',
      bad_dates: 'Choose valid start and end dates',
      meter_title: 'Usage of meter {id} (by {bucket}, {tz})',
      region_title: 'Usage of region {id} ({n} meters, by {bucket}, {tz})',
      incomplete: 'incomplete',
      no_zones: 'No zones configured yet ([[zone]] in the configuration file)',
      latest: 'Latest leakage rate',
      threshold: 'Threshold {t}%',
      above: 'Above threshold',
      below: 'Normal',
      not_judged: 'Incomplete data, not judged',
      no_periods: 'No results yet (computed at the end of each period)',
      period_of: '{start} to {end}',
      masters: 'Master meters: {list}',
      members: '{n} member meters',
      rate: 'Leakage %',
      rate_chart: 'Leakage rate chart of {name}',
      period_day: 'daily',
      period_month: 'monthly',
      so_far: 'This period so far (estimate): {rate}%',
    },
  };

  const LANG_KEY = 'waterworks.lang';
  const PAGE = document.body.dataset.page;
  let lang = loadLang();
  let shown = null; // the last report or zones list, re-rendered on a language switch
  const charts = [];

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
  /** A bucket's start as the utility's wall clock shows it (buckets are cut in its zone, not the browser's). */
  function fmtDate(ms, bucket, timeZone) {
    let p = null;
    try {
      const f = new Intl.DateTimeFormat('en-CA', {
        timeZone: timeZone || undefined, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', hourCycle: 'h23',
      });
      p = Object.fromEntries(f.formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
    } catch (_) {
      const d = new Date(ms);
      p = { year: d.getFullYear(), month: pad(d.getMonth() + 1), day: pad(d.getDate()), hour: pad(d.getHours()) };
    }
    const month = p.year + '-' + p.month;
    if (bucket === 'month') return month;
    if (bucket === 'hour') return month + '-' + p.day + ' ' + p.hour + ':00';
    return month + '-' + p.day;
  }
  function isoDate(d) {
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate());
  }

  function applyStaticLabels() {
    document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
    document.title = t(PAGE + '_page_title');
    for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
    for (const e of document.querySelectorAll('[data-i18n-label]')) e.setAttribute('aria-label', t(e.dataset.i18nLabel));
    for (const b of document.querySelectorAll('.lang-switch button')) {
      b.setAttribute('aria-pressed', b.dataset.lang === lang ? 'true' : 'false');
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
    if (shown) render(shown);
  }

  function status(text, error) {
    const s = byId('status');
    s.textContent = text || '';
    s.classList.toggle('error', Boolean(error));
  }

  async function getJson(url) {
    const res = await fetch(url, { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
    if (res.status === 401) {
      window.location.assign('/login');
      throw new Error('401');
    }
    const body = await res.json().catch(() => null);
    if (!res.ok) throw new Error((body && typeof body.error === 'string' && body.error) || String(res.status));
    return body;
  }

  function clearCharts() {
    while (charts.length) charts.pop().destroy();
  }

  /** A uPlot chart in `host`, as wide as it; `series` after the x series. */
  function chart(host, x, series, ys, opts) {
    if (typeof window.uPlot !== 'function') return null;
    const width = Math.max(200, host.clientWidth);
    const height = Math.max(160, Math.min(320, Math.round(width * 0.45)));
    // Bars and rates read from zero; the x axis shows the utility's dates, not the browser's hours.
    const scales = { x: { time: true }, y: { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } };
    const fmt = (opts && opts.format) || ((ms) => fmtDate(ms, 'day'));
    const axes = [
      { space: 90, values: (u, splits) => splits.map((s) => fmt(s * 1000)) },
      { label: (opts && opts.unit) || '' },
    ];
    const plot = new window.uPlot(
      { width, height, legend: { show: true }, scales, axes, series: [{}].concat(series) },
      [x].concat(ys),
      host,
    );
    charts.push(plot);
    return plot;
  }

  window.addEventListener('resize', () => {
    for (const c of charts) {
      const host = c.root.parentElement;
      if (host) c.setSize({ width: Math.max(200, host.clientWidth), height: c.height });
    }
  });

  // ---------------------------------------------------------------------------------------------------------
  // /usage

  function usageQuery() {
    const kind = byId('q-kind').value === 'region' ? 'region' : 'meter';
    const id = byId('q-id').value.trim();
    const bucket = byId('q-bucket').value;
    const from = byId('q-from').value;
    const to = byId('q-to').value;
    return { kind, id, bucket, from, to };
  }

  async function loadUsage() {
    const q = usageQuery();
    if (!q.id) {
      status(t('need_id'), true);
      return;
    }
    const from = q.from ? new Date(q.from + 'T00:00:00').getTime() : NaN;
    const to = q.to ? new Date(q.to + 'T23:59:59.999').getTime() : NaN;
    if (!Number.isFinite(from) || !Number.isFinite(to) || to < from) {
      status(t('bad_dates'), true);
      return;
    }
    const params = new URLSearchParams({ [q.kind]: q.id, bucket: q.bucket, from: String(from), to: String(to) });
    history.replaceState(null, '', '/usage?' + new URLSearchParams({ [q.kind]: q.id, bucket: q.bucket, from: q.from, to: q.to }));
    status(t('loading'));
    try {
      const report = await getJson('/api/usage?' + params.toString());
      shown = report;
      status('');
      render(report);
    } catch (e) {
      if (e.message !== '401') status(t('failed', { msg: e.message }), true);
    }
  }

  function renderUsage(report) {
    const bucket = report.bucket;
    const title = report.meter
      ? t('meter_title', { id: report.meter, bucket: t(bucket), tz: report.timezone })
      : t('region_title', { id: report.region, n: report.meters, bucket: t(bucket), tz: report.timezone });
    byId('result-title').textContent = title;
    byId('result').hidden = false;
    const body = byId('rows').tBodies[0];
    body.replaceChildren();
    for (const r of report.rows) {
      const tr = document.createElement('tr');
      tr.dataset.start = String(r.start);
      tr.append(el('td', null, fmtDate(r.start, bucket, report.timezone)));
      const now = el('td', 'num', r.m3);
      if (!r.complete) now.append(el('span', 'flag', ' ' + t('incomplete')));
      tr.append(now);
      const before = el('td', 'num', r.last_year.m3);
      if (!r.last_year.complete) before.append(el('span', 'flag', ' ' + t('incomplete')));
      tr.append(before);
      const a = Number(r.m3);
      const b = Number(r.last_year.m3);
      const change = r.complete && r.last_year.complete && b > 0 ? ((a - b) / b) * 100 : null;
      tr.append(el('td', 'num', change === null ? '—' : (change >= 0 ? '+' : '') + change.toFixed(1) + '%'));
      tr.append(el('td', 'num', Math.round(r.coverage * 100) + '%'));
      if (!r.complete) tr.className = 'incomplete';
      body.append(tr);
    }
    clearCharts();
    const host = byId('chart');
    host.replaceChildren();
    const x = report.rows.map((r) => r.start / 1000);
    const ys = [
      report.rows.map((r) => (r.coverage > 0 ? Number(r.m3) : null)),
      report.rows.map((r) => (r.last_year.coverage > 0 ? Number(r.last_year.m3) : null)),
    ];
    const bars = window.uPlot && window.uPlot.paths && window.uPlot.paths.bars ? window.uPlot.paths.bars({ size: [0.7, 60] }) : undefined;
    chart(host, x, [
      { label: t('this_period'), stroke: '#3d5a80', fill: 'rgba(61, 90, 128, 0.55)', paths: bars, points: { show: false } },
      { label: t('last_year'), stroke: '#8a8a8a', width: 2, dash: [6, 4] },
    ], ys, { unit: 'm³', format: (ms) => fmtDate(ms, bucket, report.timezone) });
  }

  function startUsage() {
    const params = new URLSearchParams(window.location.search);
    const today = new Date();
    const monthAgo = new Date(today.getTime() - 30 * 86400000);
    byId('q-from').value = params.get('from') || isoDate(monthAgo);
    byId('q-to').value = params.get('to') || isoDate(today);
    if (params.get('region')) {
      byId('q-kind').value = 'region';
      byId('q-id').value = params.get('region');
    } else if (params.get('meter')) {
      byId('q-id').value = params.get('meter');
    }
    const b = params.get('bucket');
    if (b === 'hour' || b === 'day' || b === 'month') byId('q-bucket').value = b;
    byId('query').addEventListener('submit', (ev) => {
      ev.preventDefault();
      loadUsage();
    });
    if (byId('q-id').value) loadUsage();
  }

  // ---------------------------------------------------------------------------------------------------------
  // /zones

  async function loadZones() {
    status(t('loading'));
    try {
      const zones = await getJson('/api/zones');
      shown = zones;
      status(zones.length === 0 ? t('no_zones') : '');
      render(zones);
    } catch (e) {
      if (e.message !== '401') status(t('failed', { msg: e.message }), true);
    }
  }

  function renderZones(zones) {
    clearCharts();
    const host = byId('zones');
    host.replaceChildren();
    for (const z of zones) {
      const tile = el('article', 'tile');
      tile.dataset.zone = z.id;
      const head = el('header', 'tile-head');
      head.append(el('h2', null, z.name), el('span', 'muted', z.id + ' · ' + t('period_' + z.period)));
      tile.append(head);
      const latest = z.periods[0];
      const threshold = z.threshold * 100;
      const big = el('p', 'rate');
      const verdict = el('p', 'verdict');
      if (!latest) {
        big.textContent = '—';
        verdict.textContent = t('no_periods');
        tile.classList.add('none');
      } else {
        big.textContent = latest.rate === null ? '—' : (latest.rate * 100).toFixed(1) + '%';
        if (!latest.complete || latest.rate === null) {
          verdict.textContent = t('not_judged');
          tile.classList.add('none');
        } else if (latest.rate > z.threshold) {
          verdict.textContent = t('above');
          tile.classList.add('above');
        } else {
          verdict.textContent = t('below');
        }
        const fmt = (ms) => fmtDate(ms, z.period === 'month' ? 'month' : 'day', z.timezone);
        verdict.append(el('span', 'muted', ' · ' + t('period_of', { start: fmt(latest.start), end: fmt(latest.end - 1) })));
      }
      tile.append(el('p', 'label', t('latest')), big, verdict);
      if (z.so_far && z.so_far.rate !== null) {
        const so = el('p', 'so-far', t('so_far', { rate: (z.so_far.rate * 100).toFixed(1) }));
        so.dataset.rate = String(z.so_far.rate);
        tile.append(so);
      }
      tile.append(el('p', 'muted', t('threshold', { t: threshold.toFixed(1) })));
      tile.append(el('p', 'muted', t('masters', { list: z.masters.join(', ') }) + ' · ' + t('members', { n: z.members })));
      const plotHost = el('div', 'chart small');
      plotHost.setAttribute('role', 'img');
      plotHost.setAttribute('aria-label', t('rate_chart', { name: z.name }));
      tile.append(plotHost);
      host.append(tile);
      const periods = z.periods.slice().reverse();
      if (periods.length > 0) {
        chart(plotHost, periods.map((p) => p.start / 1000), [
          { label: t('rate'), stroke: '#3d5a80', width: 2, points: { show: true, size: 5 } },
          { label: t('threshold', { t: threshold.toFixed(1) }), stroke: '#d0101a', width: 1, dash: [6, 4], points: { show: false } },
        ], [
          periods.map((p) => (p.rate === null ? null : Math.round(p.rate * 1000) / 10)),
          periods.map(() => threshold),
        ], { unit: '%', format: (ms) => fmtDate(ms, z.period === 'month' ? 'month' : 'day', z.timezone) });
      }
    }
  }

  function render(data) {
    if (PAGE === 'usage') renderUsage(data);
    else renderZones(data);
    document.body.dataset.rendered = lang;
  }

  function start() {
    applyStaticLabels();
    for (const b of document.querySelectorAll('.lang-switch button')) {
      b.addEventListener('click', () => setLang(b.dataset.lang));
    }
    if (PAGE === 'usage') startUsage();
    else loadZones();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
