/*
 * The trends page (issue 9 §4): pens chosen by search (a logger's or station's parameter, a meter's volume or
 * usage rate), a range (1 h, 24 h, 7 d, 30 d or custom), all pens on one uPlot chart with their limits as
 * dashed lines, zoom by dragging (each zoom asks the server again, so detail appears), pan and zoom-out
 * buttons, reset, a legend with each pen's extremes in view, and a CSV of exactly what is shown.
 *
 * The URL holds the pens and range (`?pen=param:east-wq/free_chlorine&range=24h`), so alarm rows and device
 * pages link here. Each bucket of /api/series is drawn through its minimum, maximum and last value at their
 * own times, so a dip shorter than a pixel still reaches the line. Hooks for tests and tools: `#chart`
 * carries `data-state` (loading, ready, error, empty) and its uPlot instance as the `uplot` property; legend
 * items carry `data-pen`, `data-min`, `data-max` and, for limits, `data-limit`.
 */
'use strict';
(function () {
  const TEXT = {
    zh: {
      title: '趋势', pages: '页面', pens: '曲线', add_pen: '添加曲线', search_hint: '搜索设备、表计或参数',
      chart: '图表', range: '时间范围', r_1h: '1小时', r_24h: '24小时', r_7d: '7天', r_30d: '30天', r_custom: '自定义',
      from: '从', to: '到', apply: '应用', tools: '工具', pan_left: '向前平移', pan_right: '向后平移', zoom_out: '缩小',
      reset: '复位', csv: '导出 CSV', csv_ready: '下载 {name}', legend: '图例', remove: '移除 {pen}',
      zoom_hint: '在图上拖动以放大；缩小、平移和复位用上方按钮。', no_pens: '尚未选择曲线：在左侧搜索并添加。',
      no_matches: '没有匹配项', too_many: '最多 {n} 条曲线', shown: '{from} 至 {to}，每点 {bucket}',
      empty: '该时间段没有数据', truncated: '数据过多，只显示了开头部分', volume: '累计量', rate: '用水速率',
      meter: '表计', limit_high_high: '高高限 HH', limit_high: '上限 H', limit_low: '下限 L', limit_low_low: '低低限 LL',
      min: '最小', max: '最大', last: '最新', time: '时间', s: '{n}秒', m: '{n}分钟', h: '{n}小时', d: '{n}天',
      bad_range: '开始时间须早于结束时间',
    },
    en: {
      title: 'Trends', pages: 'Pages', pens: 'Pens', add_pen: 'Add a pen', search_hint: 'Search devices, meters or parameters',
      chart: 'Chart', range: 'Range', r_1h: '1 h', r_24h: '24 h', r_7d: '7 d', r_30d: '30 d', r_custom: 'Custom',
      from: 'From', to: 'To', apply: 'Apply', tools: 'Tools', pan_left: 'Pan back', pan_right: 'Pan forward', zoom_out: 'Zoom out',
      reset: 'Reset', csv: 'Export CSV', csv_ready: 'Download {name}', legend: 'Legend', remove: 'Remove {pen}',
      zoom_hint: 'Drag on the chart to zoom in; zoom out, pan and reset with the buttons above.',
      no_pens: 'No pens yet: search and add some on the left.', no_matches: 'No matches', too_many: 'At most {n} pens',
      shown: '{from} to {to}, {bucket} per point', empty: 'No data in this range',
      truncated: 'Too much data: only the first part is drawn', volume: 'volume', rate: 'usage rate', meter: 'Meter',
      limit_high_high: 'High-high HH', limit_high: 'High H', limit_low: 'Low L', limit_low_low: 'Low-low LL',
      min: 'min', max: 'max', last: 'last', time: 'Time', s: '{n} s', m: '{n} min', h: '{n} h', d: '{n} d',
      bad_range: 'The start must be before the end',
    },
  };
  const MAX_PENS = 8;
  const MAX_POINTS = 2000;
  const RANGES = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3, '30d': 30 * 86400e3 };
  const LIMITS = ['high_high', 'high', 'low', 'low_low'];
  // Distinct on the grey ISA-101 background; limits take their pen's colour, dashed.
  const COLOURS = ['#1f5fbf', '#b35900', '#2e7d32', '#8e24aa', '#00838f', '#6d4c41', '#c2185b', '#455a64'];
  const byId = (id) => document.getElementById(id);
  const { h, t, num } = window.WW;

  const state = {
    pens: [], // pen keys, in order
    range: '24h', // a RANGES key or 'custom'
    base: null, // {from, to} of the range
    view: null, // {from, to} on screen (after zoom and pan)
    series: null, // the last /api/series answer
    devices: [], // from /api/devices, for the search
    catalogue: [], // [{key, label, search}] built from them
    names: new Map(), // device id -> name
    request: 0, // to drop answers that arrive after a newer request
    csvUrl: null,
  };
  let plot = null;

  // --- URL -------------------------------------------------------------------
  function readUrl() {
    const q = new URLSearchParams(location.search);
    state.pens = q.getAll('pen').filter((p) => p.length <= 200).slice(0, MAX_PENS);
    const range = q.get('range');
    const from = Number(q.get('from'));
    const to = Number(q.get('to'));
    if (range === 'custom' && from > 0 && to > from) {
      state.range = 'custom';
      state.base = { from: from, to: to };
    } else {
      state.range = RANGES[range] ? range : '24h';
      state.base = null;
    }
  }

  function writeUrl() {
    const q = new URLSearchParams();
    for (const p of state.pens) q.append('pen', p);
    q.set('range', state.range);
    if (state.range === 'custom') {
      q.set('from', String(state.base.from));
      q.set('to', String(state.base.to));
    }
    history.replaceState(null, '', '/trends?' + q.toString());
  }

  function baseRange() {
    if (state.range === 'custom' && state.base) return state.base;
    const to = Date.now();
    return { from: to - RANGES[state.range], to: to };
  }

  // --- Pens and the search ---------------------------------------------------
  function penLabel(key) {
    const s = state.series && state.series.pens.find((p) => p.pen === key);
    if (s) return labelOf(s);
    const c = state.catalogue.find((x) => x.key === key);
    return c ? c.label : key;
  }

  function labelOf(s) {
    const name = state.names.get(s.device) || s.device_name || s.device;
    if (s.kind === 'param') return name + ' · ' + WW.paramText(s.name);
    return t('meter') + ' ' + s.name + ' · ' + t(s.kind === 'rate' ? 'rate' : 'volume');
  }

  async function loadCatalogue() {
    try {
      const body = await WW.api('/api/devices');
      state.devices = Array.isArray(body.devices) ? body.devices : [];
      buildCatalogue();
      renderPens();
      renderResults();
    } catch (e) {
      setStatus(WW.errorText(e));
    }
  }

  // What the search finds, in the page's language (rebuilt when it changes).
  function buildCatalogue() {
    const out = [];
    for (const d of state.devices || []) {
      state.names.set(d.id, d.name || d.id);
      for (const v of Array.isArray(d.values) ? d.values : []) {
        const label = (d.name || d.id) + ' · ' + WW.paramText(v.param);
        out.push({ key: 'param:' + d.id + '/' + v.param, label: label, search: (label + ' ' + d.id + ' ' + v.param).toLowerCase() });
      }
      for (const m of Array.isArray(d.meters) ? d.meters : []) {
        for (const kind of ['meter', 'rate']) {
          const label = t('meter') + ' ' + m.id + ' · ' + t(kind === 'rate' ? 'rate' : 'volume') + ' (' + (d.name || d.id) + ')';
          out.push({ key: kind + ':' + m.id, label: label, search: (label + ' ' + d.id + ' ' + m.id).toLowerCase() });
        }
      }
    }
    state.catalogue = out;
  }

  function renderPens() {
    const ul = byId('pens');
    ul.replaceChildren(...state.pens.map((key, i) => {
      const label = penLabel(key);
      const remove = h('button', { type: 'button', class: 'remove', 'aria-label': t('remove', { pen: label }), text: '✕' });
      remove.addEventListener('click', () => {
        state.pens = state.pens.filter((p) => p !== key);
        changed();
      });
      return h('li', { dataset: { pen: key } }, [h('span', { class: 'swatch c' + (i % COLOURS.length) }), h('span', { class: 'pen-label', text: label }), remove]);
    }));
    if (!state.pens.length) ul.append(h('li', { class: 'placeholder', text: t('no_pens') }));
  }

  function renderResults() {
    const ul = byId('pen-results');
    const q = byId('pen-search').value.trim().toLowerCase();
    if (!q) {
      ul.replaceChildren();
      return;
    }
    const words = q.split(/\s+/);
    const hits = state.catalogue.filter((c) => !state.pens.includes(c.key) && words.every((w) => c.search.includes(w))).slice(0, 30);
    ul.replaceChildren(...hits.map((c) => {
      const b = h('button', { type: 'button', dataset: { pen: c.key }, text: c.label });
      b.addEventListener('click', () => {
        if (state.pens.length >= MAX_PENS) {
          setStatus(t('too_many', { n: MAX_PENS }));
          return;
        }
        state.pens.push(c.key);
        byId('pen-search').value = '';
        renderResults();
        changed();
      });
      return h('li', null, [b]);
    }));
    if (!hits.length) ul.append(h('li', { class: 'placeholder', text: t('no_matches') }));
  }

  function changed() {
    writeUrl();
    renderPens();
    state.view = null;
    load();
  }

  // --- Loading ---------------------------------------------------------------
  function setStatus(text) {
    byId('status').textContent = text || '';
  }

  async function load() {
    const chart = byId('chart');
    if (!state.pens.length) {
      state.series = null;
      draw();
      chart.dataset.state = 'empty';
      return;
    }
    const view = state.view || baseRange();
    state.view = view;
    const n = ++state.request;
    chart.dataset.state = 'loading';
    setStatus(t('loading'));
    const q = new URLSearchParams();
    for (const p of state.pens) q.append('pen', p);
    q.set('from', String(Math.floor(view.from)));
    q.set('to', String(Math.ceil(view.to)));
    q.set('points', String(Math.max(10, Math.min(MAX_POINTS, Math.round(chart.clientWidth || 600)))));
    try {
      const body = await WW.api('/api/series?' + q.toString());
      if (n !== state.request) return;
      state.series = body;
      const truncated = body.pens.some((p) => p.truncated);
      const empty = body.pens.every((p) => !p.t.length);
      setStatus(empty ? t('empty') : truncated ? t('truncated') : '');
      draw();
      renderPens();
      chart.dataset.state = 'ready';
    } catch (e) {
      if (n !== state.request) return;
      setStatus(WW.errorText(e));
      chart.dataset.state = 'error';
    }
  }

  // --- Drawing ---------------------------------------------------------------
  // Each bucket's min, max and last at their own times, oldest first, one value per time.
  function pointsOf(p) {
    const pts = [];
    for (let i = 0; i < p.t.length; i++) {
      pts.push([p.min_ts[i], p.min[i]], [p.max_ts[i], p.max[i]], [p.last_ts[i], p.last[i]]);
    }
    pts.sort((a, b) => a[0] - b[0]);
    return pts.filter((x, i) => i === 0 || x[0] !== pts[i - 1][0]);
  }

  // uPlot's data and series: x (seconds), one series per pen, one per limit of each pen.
  function build(series) {
    const view = state.view;
    const perPen = series.pens.map(pointsOf);
    const xsMs = new Set([view.from, view.to]);
    for (const pts of perPen) for (const [ts] of pts) xsMs.add(ts);
    const xs = Array.from(xsMs).sort((a, b) => a - b);
    const index = new Map(xs.map((x, i) => [x, i]));
    const data = [xs.map((x) => x / 1000)];
    const opts = [{}];
    const legend = [];
    series.pens.forEach((p, i) => {
      const ys = new Array(xs.length).fill(null);
      for (const [ts, v] of perPen[i]) ys[index.get(ts)] = v;
      const colour = COLOURS[i % COLOURS.length];
      const label = labelOf(p);
      data.push(ys);
      opts.push({ label: label, scale: p.unit || '-', stroke: colour, width: 1.5, spanGaps: true, points: { show: false } });
      const shown = perPen[i].map((x) => x[1]);
      legend.push({ pen: p.pen, colour: i, label: label, unit: p.unit, min: shown.length ? Math.min(...shown) : null,
        max: shown.length ? Math.max(...shown) : null, last: shown.length ? shown[shown.length - 1] : null });
      for (const k of LIMITS) {
        const v = num(p.limits && p.limits[k]);
        if (v === null) continue;
        data.push(new Array(xs.length).fill(v));
        const limitLabel = label + ' ' + t('limit_' + k);
        opts.push({ label: limitLabel, scale: p.unit || '-', stroke: colour, width: 1, dash: [6, 4], points: { show: false } });
        legend.push({ pen: p.pen, colour: i, limit: k, label: limitLabel, unit: p.unit, value: v });
      }
    });
    return { data: data, series: opts, legend: legend, units: Array.from(new Set(series.pens.map((p) => p.unit || '-'))) };
  }

  function size() {
    const el = byId('chart');
    const phone = window.innerWidth < 700;
    return { width: Math.max(200, el.clientWidth), height: phone ? 260 : 380 };
  }

  function draw() {
    const el = byId('chart');
    if (plot) {
      plot.destroy();
      plot = null;
      el.uplot = null;
    }
    renderLegend([]);
    const s = state.series;
    if (!s || !s.pens.length || typeof uPlot !== 'function') {
      byId('shown').textContent = '';
      return;
    }
    const built = build(s);
    const axes = [WW.timeAxis()];
    built.units.slice(0, 2).forEach((u, i) => {
      axes.push({ scale: u, label: u, side: i === 0 ? 3 : 1, stroke: '#333', grid: { show: i === 0, stroke: '#ddd' } });
    });
    const scales = { x: { time: true } };
    for (const u of built.units) scales[u] = { auto: true, range: (self, min, max) => padRange(min, max) };
    const opts = Object.assign(size(), {
      series: built.series,
      scales: scales,
      axes: axes,
      legend: { show: false },
      cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: { setSelect: [zoomToSelection] },
    });
    plot = new uPlot(opts, built.data, el);
    el.uplot = plot;
    renderLegend(built.legend);
    byId('shown').textContent = t('shown', { from: WW.fmtTime(state.view.from), to: WW.fmtTime(state.view.to), bucket: fmtSpan(s.bucket_ms) });
  }

  // A y range that shows the limits and the data with a margin.
  function padRange(min, max) {
    if (min === null || max === null) return [0, 1];
    const span = max - min || Math.abs(max) || 1;
    return [min - span * 0.08, max + span * 0.08];
  }

  function fmtSpan(ms) {
    if (ms < 60e3) return t('s', { n: Math.max(1, Math.round(ms / 1000)) });
    if (ms < 3600e3) return t('m', { n: Math.round(ms / 60e3) });
    if (ms < 86400e3) return t('h', { n: Math.round(ms / 360e3) / 10 });
    return t('d', { n: Math.round(ms / 8640e3) / 10 });
  }

  function renderLegend(items) {
    byId('legend').replaceChildren(...items.map((it) => {
      const unit = it.unit ? ' ' + it.unit : '';
      const text = it.limit
        ? it.label + ': ' + WW.fmtValue(it.value) + unit
        : it.label + ' — ' + t('min') + ' ' + WW.fmtValue(it.min) + ', ' + t('max') + ' ' + WW.fmtValue(it.max) + ', ' + t('last') + ' ' + WW.fmtValue(it.last) + unit;
      const li = h('li', { class: it.limit ? 'limit' : 'pen', dataset: { pen: it.pen } }, [
        h('span', { class: 'swatch c' + (it.colour % COLOURS.length) + (it.limit ? ' dashed' : '') }), h('span', { text: text })]);
      if (it.limit) {
        li.dataset.limit = it.limit;
        li.dataset.value = String(it.value);
      } else {
        if (it.min !== null) li.dataset.min = String(it.min);
        if (it.max !== null) li.dataset.max = String(it.max);
      }
      return li;
    }));
  }

  // --- Zoom, pan, reset ------------------------------------------------------
  function zoomToSelection(u) {
    if (u.select.width < 5) return;
    const from = u.posToVal(u.select.left, 'x') * 1000;
    const to = u.posToVal(u.select.left + u.select.width, 'x') * 1000;
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    if (to - from < 1000) return;
    state.view = { from: from, to: to };
    load();
  }

  function shift(fraction) {
    const v = state.view || baseRange();
    const d = (v.to - v.from) * fraction;
    state.view = { from: v.from + d, to: v.to + d };
    load();
  }

  function zoomOut() {
    const v = state.view || baseRange();
    const span = v.to - v.from;
    const mid = (v.from + v.to) / 2;
    const half = Math.min(span, 200 * 86400e3);
    state.view = { from: mid - half, to: mid + half };
    load();
  }

  // --- CSV of what is shown --------------------------------------------------
  function csvCell(v) {
    const s = String(v);
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  function exportCsv() {
    const s = state.series;
    if (!s || !plot) return;
    const built = build(s);
    const min = plot.scales.x.min;
    const max = plot.scales.x.max;
    const head = [t('time')].concat(built.series.slice(1).map((x, i) => {
      const item = built.legend[i];
      return x.label + (item && item.unit ? ' (' + item.unit + ')' : '');
    }));
    const lines = [head.map(csvCell).join(',')];
    const xs = built.data[0];
    for (let i = 0; i < xs.length; i++) {
      if (xs[i] < min || xs[i] > max) continue;
      const row = [new Date(xs[i] * 1000).toISOString()];
      let any = false;
      for (let j = 1; j < built.data.length; j++) {
        const v = built.data[j][i];
        row.push(v === null ? '' : String(v));
        if (v !== null && !built.legend[j - 1].limit) any = true;
      }
      if (any) lines.push(row.map(csvCell).join(','));
    }
    // A byte-order mark so that spreadsheet programs read the Chinese labels as UTF-8.
    const blob = new Blob(['\ufeff' + lines.join('\r\n') + '\r\n'], { type: 'text/csv;charset=utf-8' });
    if (state.csvUrl) URL.revokeObjectURL(state.csvUrl);
    state.csvUrl = URL.createObjectURL(blob);
    const d = new Date();
    const pad = (n) => String(n).padStart(2, '0');
    const name = 'trend-' + d.getFullYear() + pad(d.getMonth() + 1) + pad(d.getDate()) + '-' + pad(d.getHours()) + pad(d.getMinutes()) + '.csv';
    const a = byId('csv-link');
    a.href = state.csvUrl;
    a.download = name;
    a.dataset.name = name;
    a.textContent = t('csv_ready', { name: name });
    a.hidden = false;
    a.click();
  }

  // --- Range -----------------------------------------------------------------
  function toLocalInput(ms) {
    const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60e3);
    return d.toISOString().slice(0, 16);
  }

  function renderRange() {
    for (const b of document.querySelectorAll('.range button')) {
      b.setAttribute('aria-pressed', b.dataset.range === state.range ? 'true' : 'false');
    }
    byId('custom').hidden = state.range !== 'custom';
  }

  function wire() {
    for (const b of document.querySelectorAll('.range button')) {
      b.addEventListener('click', () => {
        state.range = b.dataset.range;
        if (state.range === 'custom') {
          const v = state.view || baseRange();
          byId('c-from').value = toLocalInput(v.from);
          byId('c-to').value = toLocalInput(v.to);
          state.base = { from: v.from, to: v.to };
          renderRange();
          return;
        }
        state.base = null;
        renderRange();
        changed();
      });
    }
    byId('custom').addEventListener('submit', (e) => {
      e.preventDefault();
      const from = new Date(byId('c-from').value).getTime();
      const to = new Date(byId('c-to').value).getTime();
      if (!(from < to)) {
        setStatus(t('bad_range'));
        return;
      }
      state.base = { from: from, to: to };
      changed();
    });
    byId('pen-search').addEventListener('input', renderResults);
    byId('pan-left').addEventListener('click', () => shift(-0.5));
    byId('pan-right').addEventListener('click', () => shift(0.5));
    byId('zoom-out').addEventListener('click', zoomOut);
    byId('reset').addEventListener('click', () => {
      state.view = null;
      load();
    });
    byId('csv').addEventListener('click', exportCsv);
    // A preset range that nobody zoomed or panned follows the clock, as a control-room trend does.
    setInterval(() => {
      const v = state.view;
      const base = baseRange();
      const following = state.range !== 'custom' && v && Math.abs(v.to - v.from - (base.to - base.from)) < 1000 && base.to - v.to < 60e3;
      if (!document.hidden && state.pens.length && following && byId('chart').dataset.state === 'ready') {
        state.view = null;
        load();
      }
    }, 30000);
    let width = 0;
    new ResizeObserver(() => {
      const el = byId('chart');
      if (plot && el.clientWidth !== width) {
        width = el.clientWidth;
        plot.setSize(size());
      }
    }).observe(byId('chart'));
  }

  readUrl();
  wire();
  WW.page(TEXT, () => {
    buildCatalogue();
    const a = byId('csv-link');
    if (a.dataset.name) a.textContent = t('csv_ready', { name: a.dataset.name });
    renderRange();
    renderPens();
    renderResults();
    if (state.series) draw();
  });
  loadCatalogue();
  load();
})();
