/*
 * The device list (/devices) and a device's page (/devices/{id}) (issue 9 §4); `body[data-page]` says which.
 *
 * The list: every device from /api/devices with search, "only abnormal" (the rule of `WW.abnormal`, the same
 * the overview's region tiles count), kind, region and sort, all kept in the URL; refreshed every 15 s.
 * A device's page: its facts and values, its meters paged 50 at a time (a concentrator may have hundreds),
 * its comm history from /api/events, its standing alarms from /api/alarms and a 24 h trend of its parameters
 * from /api/series. Hooks for tests: rows carry `data-device` and `data-abnormal`; meter rows `data-meter`.
 */
'use strict';
(function () {
  const TEXT = {
    zh: {
      title: '设备列表', pages: '页面', f_search: '搜索', f_search_hint: '名称、编号或表号', f_kind: '类型', f_region: '区域',
      f_sort: '排序', f_abnormal: '只看异常', all: '全部', sort_abnormal: '异常优先', sort_name: '名称', sort_region: '区域',
      sort_kind: '类型', sort_last: '最后通信（最早在前）', c_device: '设备', c_kind: '类型', c_region: '区域', c_state: '状态',
      c_last: '最后通信', c_trend: '趋势', more: '显示更多', count: '共 {n} 台设备，显示 {shown} 台',
      trend: '趋势', device_title: '设备', h_facts: '概况', h_alarms: '当前报警', h_values: '测量值', h_trend: '趋势（24小时）',
      open_trends: '在趋势页打开', h_meters: '表计', m_search: '搜索表号', h_comm: '通信与事件记录', c_param: '参数', c_value: '数值',
      c_limits: '限值', c_time: '时间', c_meter: '表号', c_volume: '累计量 (m³)', prev: '上一页', next: '下一页', paging: '翻页',
      m_count: '共 {n} 块表，显示第 {a}–{b} 块', m_page: '第 {p} / {n} 页', id: '编号', kind: '类型', region: '区域',
      comm: '通信', comm_ok: '正常', comm_lost: '中断', last_success: '最后成功', cycle: '采集周期', path: '通信路径',
      last_error: '最近错误', valve_state: '阀门状态', no_alarms: '无当前报警', no_events: '无记录',
      no_device: '没有这台设备：{id}', seconds: '{n} 秒', meter_comm_lost: '通信中断', none: '—', normal: '正常',
      flag_low: '低于下限', flag_high: '高于上限', flag_device_flag: '仪器标记', meters_count: '{n} 块表',
      prio_urgent: '紧急', prio_high: '高', prio_medium: '中', prio_low: '低',
      state_unacknowledged: '未确认', state_acknowledged: '已确认', state_returned_unacknowledged: '已恢复未确认',
      state_shelved: '已搁置', state_suppressed_by_design: '设计抑制', state_out_of_service: '停用',
      ev_comm_lost: '通信中断（连续 {misses} 个周期无数据）', ev_comm_restored: '通信恢复',
      ev_meter_comm_lost: '表计 {meter} 通信中断', ev_meter_comm_restored: '表计 {meter} 通信恢复',
      ev_path_switched: '通信路径切换：{from} → {to}', ev_valve_fault: '阀门故障', ev_valve_fault_cleared: '阀门故障解除',
      ev_limit_crossed: '{param} {value} {unit} 越限', ev_limit_cleared: '{param} {value} {unit} 恢复正常',
      ev_actor_restart: '采集程序重启', valve_open: '开', valve_closed: '关', valve_fault: '故障', valve_unknown: '未知', valve_opening: '正在开', valve_closing: '正在关',
    },
    en: {
      title: 'Devices', pages: 'Pages', f_search: 'Search', f_search_hint: 'Name, id or meter', f_kind: 'Kind', f_region: 'Region',
      f_sort: 'Sort', f_abnormal: 'Only abnormal', all: 'All', sort_abnormal: 'Abnormal first', sort_name: 'Name', sort_region: 'Region',
      sort_kind: 'Kind', sort_last: 'Last comm (oldest first)', c_device: 'Device', c_kind: 'Kind', c_region: 'Region', c_state: 'State',
      c_last: 'Last comm', c_trend: 'Trend', more: 'Show more', count: '{n} devices, {shown} shown',
      trend: 'Trend', device_title: 'Device', h_facts: 'Overview', h_alarms: 'Standing alarms', h_values: 'Values', h_trend: 'Trend (24 h)',
      open_trends: 'Open in trends', h_meters: 'Meters', m_search: 'Search meters', h_comm: 'Comm and event history', c_param: 'Parameter',
      c_value: 'Value', c_limits: 'Limits', c_time: 'Time', c_meter: 'Meter', c_volume: 'Volume (m³)', prev: 'Previous',
      next: 'Next', paging: 'Pages', m_count: '{n} meters, {a}–{b} shown', m_page: 'Page {p} of {n}', id: 'Id', kind: 'Kind',
      region: 'Region', comm: 'Comm', comm_ok: 'OK', comm_lost: 'Lost', last_success: 'Last success', cycle: 'Cycle', path: 'Path',
      last_error: 'Last error', valve_state: 'Valve', no_alarms: 'No standing alarms', no_events: 'No history',
      no_device: 'No such device: {id}', seconds: '{n} s', meter_comm_lost: 'comm lost', none: '—', normal: 'Normal',
      flag_low: 'below low limit', flag_high: 'above high limit', flag_device_flag: 'flagged by the device', meters_count: '{n} meters',
      prio_urgent: 'Urgent', prio_high: 'High', prio_medium: 'Medium', prio_low: 'Low',
      state_unacknowledged: 'Unacknowledged', state_acknowledged: 'Acknowledged', state_returned_unacknowledged: 'Returned, unacknowledged',
      state_shelved: 'Shelved', state_suppressed_by_design: 'Suppressed by design', state_out_of_service: 'Out of service',
      ev_comm_lost: 'Comm lost ({misses} cycles without data)', ev_comm_restored: 'Comm restored',
      ev_meter_comm_lost: 'Meter {meter} comm lost', ev_meter_comm_restored: 'Meter {meter} comm restored',
      ev_path_switched: 'Path switched: {from} → {to}', ev_valve_fault: 'Valve fault', ev_valve_fault_cleared: 'Valve fault cleared',
      ev_limit_crossed: '{param} {value} {unit} out of limits', ev_limit_cleared: '{param} {value} {unit} back within limits',
      ev_actor_restart: 'Reader restarted', valve_open: 'Open', valve_closed: 'Closed', valve_fault: 'Fault', valve_unknown: 'Unknown', valve_opening: 'Opening', valve_closing: 'Closing',
    },
  };
  const { h, t, num } = window.WW;
  const byId = (id) => document.getElementById(id);
  const PAGE = 200; // list rows shown at once (more on demand)
  const METER_PAGE = 50;

  // A text this page knows, or `fallback`.
  // Alarm class names are the banner's (every page loads it first), so every page names an alarm alike; the
  // banner is told this page's language first, since it may not have seen the switch yet.
  function className(cls) {
    const W = window.WaterworksAlarms;
    if (!W) return String(cls);
    if (W.lang() !== WW.lang()) W.setLang(WW.lang());
    return W.label('class', cls);
  }

  function known(key, fallback, vars) {
    return TEXT.zh[key] === undefined ? fallback : t(key, vars);
  }

  function chipsOf(ab) {
    const keys = WW.ABNORMAL_KEYS.filter((k) => ab[k] > 0);
    if (!keys.length) return h('span', { class: 'ok', text: t('normal') });
    return h('span', { class: 'chips' }, keys.map((k) => h('span', { class: 'chip', text: t('ab_' + k) + (ab[k] > 1 ? ' ' + ab[k] : '') })));
  }

  function trendHref(d) {
    const pens = (Array.isArray(d.values) ? d.values : []).slice(0, 8).map((v) => 'pen=' + encodeURIComponent('param:' + d.id + '/' + v.param));
    return pens.length ? '/trends?' + pens.join('&') : null;
  }

  // --- The list --------------------------------------------------------------
  function list() {
    const st = { devices: [], regions: [], shown: PAGE };
    const q = new URLSearchParams(location.search);
    byId('f-q').value = (q.get('q') || '').slice(0, 100);
    byId('f-abnormal').checked = q.get('abnormal') === '1';
    const wanted = { kind: q.get('kind') || '', region: q.get('region') || '', sort: q.get('sort') || 'abnormal' };
    byId('f-sort').value = ['abnormal', 'name', 'region', 'kind', 'last'].includes(wanted.sort) ? wanted.sort : 'abnormal';

    function writeUrl() {
      const p = new URLSearchParams();
      if (byId('f-q').value.trim()) p.set('q', byId('f-q').value.trim());
      if (byId('f-abnormal').checked) p.set('abnormal', '1');
      if (byId('f-kind').value) p.set('kind', byId('f-kind').value);
      if (byId('f-region').value) p.set('region', byId('f-region').value);
      if (byId('f-sort').value !== 'abnormal') p.set('sort', byId('f-sort').value);
      const s = p.toString();
      history.replaceState(null, '', '/devices' + (s ? '?' + s : ''));
    }

    function options() {
      const kinds = Array.from(new Set(st.devices.map((d) => d.kind))).sort();
      const kind = byId('f-kind');
      const keepKind = kind.value || wanted.kind;
      kind.replaceChildren(h('option', { value: '', text: t('all') }), ...kinds.map((k) => h('option', { value: k, text: WW.kindText(k) })));
      kind.value = kinds.includes(keepKind) ? keepKind : '';
      const region = byId('f-region');
      const keepRegion = region.value || wanted.region;
      region.replaceChildren(h('option', { value: '', text: t('all') }), ...st.regions.map((r) => h('option', { value: r.id, text: r.name || r.id })));
      region.value = st.regions.some((r) => r.id === keepRegion) ? keepRegion : '';
      wanted.kind = '';
      wanted.region = '';
    }

    function regionName(id) {
      const r = st.regions.find((x) => x.id === id);
      return r ? r.name || r.id : id || '';
    }

    function render() {
      const text = byId('f-q').value.trim().toLowerCase();
      const onlyAbnormal = byId('f-abnormal').checked;
      const kind = byId('f-kind').value;
      const region = byId('f-region').value;
      const sort = byId('f-sort').value;
      let rows = st.devices.map((d) => ({ d: d, ab: WW.abnormal(d) }));
      rows = rows.filter(({ d, ab }) => {
        if (onlyAbnormal && ab.total === 0) return false;
        if (kind && d.kind !== kind) return false;
        if (region && d.region !== region) return false;
        if (!text) return true;
        if ((d.name || '').toLowerCase().includes(text) || d.id.toLowerCase().includes(text)) return true;
        return Array.isArray(d.meters) && d.meters.some((m) => m.id.toLowerCase().includes(text));
      });
      const byName = (a, b) => (a.d.name || a.d.id).localeCompare(b.d.name || b.d.id, 'zh-CN');
      const last = (r) => num(r.d.comm && r.d.comm.last_success) ?? -1;
      const cmp = {
        abnormal: (a, b) => b.ab.total - a.ab.total || byName(a, b),
        name: byName,
        region: (a, b) => regionName(a.d.region).localeCompare(regionName(b.d.region), 'zh-CN') || byName(a, b),
        kind: (a, b) => WW.kindText(a.d.kind).localeCompare(WW.kindText(b.d.kind), 'zh-CN') || byName(a, b),
        last: (a, b) => last(a) - last(b) || byName(a, b),
      }[sort];
      rows.sort(cmp);
      byId('count').textContent = t('count', { n: rows.length, shown: Math.min(rows.length, st.shown) });
      byId('more').hidden = rows.length <= st.shown;
      byId('rows').replaceChildren(...rows.slice(0, st.shown).map(({ d, ab }) => {
        const trend = trendHref(d);
        const meters = Array.isArray(d.meters) && d.meters.length ? h('span', { class: 'ok', text: ' · ' + t('meters_count', { n: d.meters.length }) }) : null;
        return h('tr', { dataset: { device: d.id, abnormal: String(ab.total) } }, [
          h('td', { 'data-label': t('c_device') }, [h('a', { href: '/devices/' + encodeURIComponent(d.id), text: d.name || d.id }), ' ', h('span', { class: 'ok', text: d.id }), meters]),
          h('td', { 'data-label': t('c_kind'), text: WW.kindText(d.kind) }),
          h('td', { 'data-label': t('c_region'), text: regionName(d.region) }),
          h('td', { 'data-label': t('c_state') }, [chipsOf(ab)]),
          h('td', { 'data-label': t('c_last'), text: WW.fmtTime(d.comm && d.comm.last_success, true) }),
          h('td', { 'data-label': t('c_trend') }, [trend ? h('a', { href: trend, text: t('trend') }) : h('span', { class: 'ok', text: t('none') })]),
        ]);
      }));
    }

    async function refresh() {
      try {
        const body = await WW.api('/api/devices');
        st.devices = Array.isArray(body.devices) ? body.devices : [];
        st.regions = Array.isArray(body.regions) ? body.regions : [];
        options();
        render();
        byId('status').textContent = '';
        document.body.dataset.ready = 'true';
      } catch (e) {
        byId('status').textContent = WW.errorText(e);
      }
    }

    for (const id of ['f-q', 'f-abnormal', 'f-kind', 'f-region', 'f-sort']) {
      byId(id).addEventListener(id === 'f-q' ? 'input' : 'change', () => {
        st.shown = PAGE;
        writeUrl();
        render();
      });
    }
    byId('filters').addEventListener('submit', (e) => e.preventDefault());
    byId('more').addEventListener('click', () => {
      st.shown += PAGE;
      render();
    });
    WW.page(TEXT, () => {
      if (st.devices.length) {
        options();
        render();
      }
    });
    refresh();
    setInterval(() => {
      if (!document.hidden) refresh();
    }, 15000);
  }

  // --- One device ------------------------------------------------------------
  function device() {
    const id = decodeURIComponent(location.pathname.split('/')[2] || '');
    const st = { d: null, regions: [], alarms: [], events: [], series: null, page: 0 };
    let plot = null;

    function fact(key, value) {
      return [h('dt', { text: t(key) }), h('dd', null, [value])];
    }

    function renderFacts() {
      const d = st.d;
      const c = d.comm || {};
      const region = st.regions.find((r) => r.id === d.region);
      const ab = WW.abnormal(d);
      const items = [
        fact('id', d.id),
        fact('kind', WW.kindText(d.kind)),
        fact('region', region ? region.name || region.id : d.region),
        fact('comm', h('span', { class: c.comm_lost ? 'abn' : 'ok', text: t(c.comm_lost ? 'comm_lost' : 'comm_ok') })),
        fact('c_state', chipsOf(ab)),
        fact('last_success', WW.fmtTime(c.last_success, true)),
        fact('cycle', num(c.cycle_ms) !== null ? t('seconds', { n: c.cycle_ms / 1000 }) : '—'),
      ];
      if (typeof c.path === 'string' && c.path) items.push(fact('path', c.path));
      if (typeof c.last_error === 'string' && c.last_error) items.push(fact('last_error', c.last_error));
      if (d.valve && d.valve.state) items.push(fact('valve_state', known('valve_' + d.valve.state, String(d.valve.state))));
      byId('facts').replaceChildren(...items.flat());
      document.body.dataset.abnormal = String(ab.total);
    }

    function renderValues() {
      const values = Array.isArray(st.d.values) ? st.d.values : [];
      byId('values-panel').hidden = !values.length;
      byId('values').tBodies[0].replaceChildren(...values.map((p) => {
        const ab = WW.abnormal({ values: [p] }).quality > 0;
        const flags = (Array.isArray(p.flags) ? p.flags : []).map((f) => t('flag_' + f)).join(', ');
        const limits = (num(p.low) !== null ? '≥ ' + p.low : '') + (num(p.low) !== null && num(p.high) !== null ? ', ' : '') + (num(p.high) !== null ? '≤ ' + p.high : '');
        const href = '/trends?pen=' + encodeURIComponent('param:' + st.d.id + '/' + p.param);
        return h('tr', { dataset: { param: p.param } }, [
          h('td', { 'data-label': t('c_param'), text: WW.paramText(p.param) }),
          h('td', { 'data-label': t('c_value'), class: ab ? 'abn' : '', text: WW.fmtValue(num(p.value)) + ' ' + (p.unit || '') + (flags ? ' (' + flags + ')' : '') }),
          h('td', { 'data-label': t('c_limits'), text: limits || '—' }),
          h('td', { 'data-label': t('c_time'), text: WW.fmtTime(p.ts, true) }),
          h('td', { 'data-label': t('c_trend') }, [h('a', { href: href, text: t('trend') })]),
        ]);
      }));
    }

    function renderMeters() {
      const meters = Array.isArray(st.d.meters) ? st.d.meters : [];
      byId('meters-panel').hidden = !meters.length;
      if (!meters.length) return;
      const text = byId('m-q').value.trim().toLowerCase();
      const onlyAbnormal = byId('m-abnormal').checked;
      const rows = meters.filter((m) => (!text || m.id.toLowerCase().includes(text)) && (!onlyAbnormal || WW.abnormal({ meters: [m] }).total > 0));
      const pages = Math.max(1, Math.ceil(rows.length / METER_PAGE));
      st.page = Math.min(st.page, pages - 1);
      const a = st.page * METER_PAGE;
      const shown = rows.slice(a, a + METER_PAGE);
      byId('m-count').textContent = t('m_count', { n: rows.length, a: rows.length ? a + 1 : 0, b: a + shown.length });
      byId('m-page').textContent = t('m_page', { p: st.page + 1, n: pages });
      byId('m-prev').disabled = st.page === 0;
      byId('m-next').disabled = st.page >= pages - 1;
      byId('meters').tBodies[0].replaceChildren(...shown.map((m) => {
        const ab = WW.abnormal({ meters: [m] });
        const pens = 'pen=' + encodeURIComponent('meter:' + m.id) + '&pen=' + encodeURIComponent('rate:' + m.id);
        return h('tr', { dataset: { meter: m.id, abnormal: String(ab.total) } }, [
          h('td', { 'data-label': t('c_meter'), text: m.id }),
          h('td', { 'data-label': t('c_volume'), text: m.volume_m3 ?? '—' }),
          h('td', { 'data-label': t('c_time'), text: WW.fmtTime(m.ts, true) }),
          h('td', { 'data-label': t('c_state') }, [chipsOf(ab)]),
          h('td', { 'data-label': t('c_trend') }, [h('a', { href: '/trends?' + pens, text: t('trend') })]),
        ]);
      }));
    }

    function renderAlarms() {
      const mine = st.alarms.filter((a) => a && a.key && a.key.device === id);
      byId('alarms').replaceChildren(...mine.map((a) => h('li', { class: 'abn', dataset: { alarm: a.key.class } }, [
        h('span', { text: t('prio_' + a.priority) + ' · ' }),
        h('span', { text: className(a.key.class) + (a.key.detail ? ' ' + WW.paramText(a.key.detail) : '') }),
        h('span', { class: 'ok', text: ' · ' + t('state_' + a.state) + ' · ' + WW.fmtTime(a.since ?? a.raised_at) }),
      ])));
      if (!mine.length) byId('alarms').append(h('li', { class: 'ok', text: t('no_alarms') }));
    }

    // An event in the page's language from its kind and params; the server's English text for others.
    function eventText(e) {
      const p = e.params && typeof e.params === 'object' ? e.params : {};
      const value = Number(p.value);
      const vars = Object.assign({}, p, { param: WW.paramText(p.parameter || ''), value: Number.isFinite(value) ? WW.fmtValue(value) : '' });
      const text = known('ev_' + e.kind, null, vars);
      return text === null ? e.message || e.kind : text;
    }

    function renderEvents() {
      byId('comm').replaceChildren(...st.events.map((e) => h('li', { dataset: { kind: e.kind } }, [
        h('time', { text: WW.fmtTime(e.ts, true) }), h('span', { text: eventText(e) })])));
      if (!st.events.length) byId('comm').append(h('li', { class: 'ok', text: t('no_events') }));
    }

    function renderTrend() {
      const values = Array.isArray(st.d.values) ? st.d.values : [];
      const href = trendHref(st.d);
      byId('trend-panel').hidden = !href;
      if (!href) return;
      byId('trend-open').href = href;
      const el = byId('chart');
      if (plot) {
        plot.destroy();
        plot = null;
      }
      const s = st.series;
      if (!s || typeof uPlot !== 'function') return;
      // One line per parameter through each bucket's last value, limits dashed (the trends page shows min/max).
      const xs = Array.from(new Set([s.from, s.to].concat(s.pens.flatMap((p) => p.last_ts)))).sort((a, b) => a - b);
      const index = new Map(xs.map((x, i) => [x, i]));
      const data = [xs.map((x) => x / 1000)];
      const series = [{}];
      const colours = ['#1f5fbf', '#b35900', '#2e7d32', '#8e24aa', '#00838f', '#6d4c41', '#c2185b', '#455a64'];
      const legend = [];
      s.pens.forEach((p, i) => {
        const ys = new Array(xs.length).fill(null);
        p.last_ts.forEach((ts, j) => { ys[index.get(ts)] = p.last[j]; });
        data.push(ys);
        series.push({ label: WW.paramText(p.name), scale: p.unit || '-', stroke: colours[i % 8], spanGaps: true,
          points: { show: p.t.length < 30, size: 5, fill: colours[i % 8] } });
        legend.push(h('li', null, [h('span', { class: 'swatch c' + (i % 8) }), h('span', { text: WW.paramText(p.name) + (p.unit ? ' (' + p.unit + ')' : '') })]));
      });
      byId('legend').replaceChildren(...legend);
      if (!xs.length || !values.length) return;
      plot = new uPlot({ width: Math.max(200, el.clientWidth), height: 220, series: series, legend: { show: false },
        axes: [WW.timeAxis(), { scale: s.pens[0].unit || '-', label: s.pens[0].unit, stroke: '#333' }],
        cursor: { drag: { x: false, y: false } } }, data, el);
      el.uplot = plot;
    }

    function renderAll() {
      if (!st.d) return;
      byId('device-title').textContent = st.d.name || st.d.id;
      document.title = (st.d.name || st.d.id) + ' · ' + (WW.lang() === 'zh' ? '智慧水务监控' : 'Waterworks');
      renderFacts();
      renderValues();
      renderMeters();
      renderAlarms();
      renderEvents();
      renderTrend();
    }

    async function refresh() {
      try {
        const [d, all] = await Promise.all([WW.api('/api/devices/' + encodeURIComponent(id)), WW.api('/api/devices')]);
        st.d = d;
        st.regions = Array.isArray(all.regions) ? all.regions : [];
        byId('device').hidden = false;
        byId('status').textContent = '';
      } catch (e) {
        byId('status').textContent = e && e.status === 404 ? t('no_device', { id: id }) : WW.errorText(e);
        document.body.dataset.ready = 'missing';
        return;
      }
      const [alarms, events, series] = await Promise.allSettled([
        WW.api('/api/alarms'),
        WW.api('/api/events?device=' + encodeURIComponent(id) + '&limit=50'),
        (() => {
          const pens = (Array.isArray(st.d.values) ? st.d.values : []).slice(0, 8).map((v) => 'pen=' + encodeURIComponent('param:' + id + '/' + v.param));
          return pens.length ? WW.api('/api/series?' + pens.join('&') + '&points=300') : Promise.resolve(null);
        })(),
      ]);
      st.alarms = alarms.status === 'fulfilled' && Array.isArray(alarms.value) ? alarms.value : [];
      st.events = events.status === 'fulfilled' && Array.isArray(events.value) ? events.value : [];
      st.series = series.status === 'fulfilled' ? series.value : null;
      renderAll();
      document.body.dataset.ready = 'true';
    }

    byId('m-q').addEventListener('input', () => { st.page = 0; renderMeters(); });
    byId('m-abnormal').addEventListener('change', () => { st.page = 0; renderMeters(); });
    byId('m-prev').addEventListener('click', () => { st.page--; renderMeters(); });
    byId('m-next').addEventListener('click', () => { st.page++; renderMeters(); });
    WW.page(TEXT, renderAll);
    new ResizeObserver(() => {
      const el = byId('chart');
      if (plot && Math.abs(plot.width - el.clientWidth) > 1) plot.setSize({ width: Math.max(200, el.clientWidth), height: 220 });
    }).observe(byId('chart'));
    refresh();
    setInterval(() => {
      if (!document.hidden) refresh();
    }, 15000);
  }

  if (document.body.dataset.page === 'device') device();
  else list();
})();
