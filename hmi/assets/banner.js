/*
 * The alarm banner (issue 9 §4), on every page: a page includes banner.css and banner.js and nothing else;
 * this script inserts the banner at the top of <body>.
 *
 * What it shows: the newest highest-priority unacknowledged alarm, the unacknowledged count per priority, a
 * link to /alarms, whether the live stream is live or stalled (no frame and no heartbeat for 2.5 heartbeat
 * intervals, even if the socket looks open), and a flood summary ("23 alarms in 10 min") beside, never
 * instead of, the top alarm. A flood is FLOOD_COUNT or more alarms raised within FLOOD_WINDOW_MS (ISA-18.2:
 * more than 10 alarms in 10 minutes per operator position).
 *
 * The annunciator: a WebAudio tone per priority (no audio files) repeats while an unacknowledged alarm that
 * came in since the last silence stands. Silence stops the tone only: the alarms stay unacknowledged, and the
 * next alarm sounds again. Browsers allow sound only after the user touched the page; until then the banner
 * says so (data-sound="blocked").
 *
 * It opens its own WebSocket to /ws (resuming with ?since=&epoch= after a drop, like app.js) rather than
 * sharing app.js's: the banner then works the same on every page, whether or not app.js is there, and one
 * more socket per open page is cheap for the server. The alarms page reads the banner's alarm set through
 * window.WaterworksAlarms (one socket per page there).
 *
 * Nothing from the wire becomes markup: text goes through textContent.
 */
'use strict';

(function () {
  const LANG_KEY = 'waterworks.lang';
  const FLOOD_COUNT = 10;
  const FLOOD_WINDOW_MS = 10 * 60 * 1000;
  const DEFAULT_HEARTBEAT_MS = 5000;
  const STALL_FACTOR = 2.5;
  const PRIORITIES = ['urgent', 'high', 'medium', 'low'];
  const RANK = { urgent: 4, high: 3, medium: 2, low: 1 };
  const UNACKED = ['unacknowledged', 'returned_unacknowledged'];
  // Tone per priority: frequency (Hz), beeps per burst, beep length (s), pause between bursts (ms).
  const TONES = {
    urgent: { hz: 988, beeps: 3, len: 0.12, every: 1500 },
    high: { hz: 784, beeps: 2, len: 0.15, every: 2500 },
    medium: { hz: 659, beeps: 1, len: 0.2, every: 4000 },
    low: { hz: 523, beeps: 1, len: 0.25, every: 8000 },
  };

  const I18N = {
    zh: {
      banner: '报警栏',
      no_alarms: '无未确认报警',
      open_list: '报警列表',
      silence: '消音',
      silenced: '已消音',
      sound_blocked: '点击页面以启用报警声音',
      flood: '{n} 条报警 / {m} 分钟',
      live: '实时',
      stalled: '数据流停滞',
      reconnecting: '重新连接中',
      count_label: '{p}：{n}',
      top_label: '最新最高优先级未确认报警',
      priority: { urgent: '紧急', high: '高', medium: '中', low: '低' },
      state: {
        normal: '正常',
        unacknowledged: '未确认',
        acknowledged: '已确认',
        returned_unacknowledged: '已恢复未确认',
        shelved: '已搁置',
        suppressed_by_design: '设计抑制',
        out_of_service: '停用',
      },
      what: {
        activated: '报警',
        cleared: '恢复',
        acknowledged: '确认',
        shelved: '搁置',
        unshelved: '取消搁置',
        shelve_expired: '搁置到期',
        suppressed: '抑制',
        unsuppressed: '解除抑制',
        removed_from_service: '停用',
        returned_to_service: '恢复启用',
      },
      class: {
        quality_high_high: '水质超高高限',
        quality_high: '水质超上限',
        quality_low: '水质低于下限',
        quality_low_low: '水质低于低低限',
        sensor_untrusted: '传感器数据不可信',
        comm_lost: '设备通信中断',
        meter_comm_lost: '表计通信中断',
        meter_tamper: '表计磁干扰',
        meter_reverse_flow: '表计反向流',
        meter_fault: '表计故障',
        meter_battery_low: '表计电池电量低',
        meter_valve_fault: '表计阀门故障',
        volume_fell: '累计水量下降',
        volume_rollover: '累计水量翻转',
        volume_suspected_swap: '疑似换表或误读',
        valve_command_failed: '阀门命令失败',
        valve_uncommanded: '阀门非指令动作',
        abnormal_usage: '用水异常',
        night_flow: '夜间持续流量',
        zone_leakage: '分区漏损超限',
      },
    },
    en: {
      banner: 'Alarm banner',
      no_alarms: 'No unacknowledged alarms',
      open_list: 'Alarm list',
      silence: 'Silence',
      silenced: 'Silenced',
      sound_blocked: 'Click the page to enable alarm sound',
      flood: '{n} alarms in {m} min',
      live: 'Live',
      stalled: 'Stream stalled',
      reconnecting: 'Reconnecting',
      count_label: '{p}: {n}',
      top_label: 'Newest highest-priority unacknowledged alarm',
      priority: { urgent: 'Urgent', high: 'High', medium: 'Medium', low: 'Low' },
      state: {
        normal: 'Normal',
        unacknowledged: 'Unacknowledged',
        acknowledged: 'Acknowledged',
        returned_unacknowledged: 'Returned, unacknowledged',
        shelved: 'Shelved',
        suppressed_by_design: 'Suppressed by design',
        out_of_service: 'Out of service',
      },
      what: {
        activated: 'Activated',
        cleared: 'Cleared',
        acknowledged: 'Acknowledged',
        shelved: 'Shelved',
        unshelved: 'Unshelved',
        shelve_expired: 'Shelf expired',
        suppressed: 'Suppressed',
        unsuppressed: 'Unsuppressed',
        removed_from_service: 'Out of service',
        returned_to_service: 'Back in service',
      },
      class: {
        quality_high_high: 'Quality above high-high',
        quality_high: 'Quality above limit',
        quality_low: 'Quality below limit',
        quality_low_low: 'Quality below low-low',
        sensor_untrusted: 'Sensor untrusted',
        comm_lost: 'Device comm lost',
        meter_comm_lost: 'Meter comm lost',
        meter_tamper: 'Meter magnetic tamper',
        meter_reverse_flow: 'Meter reverse flow',
        meter_fault: 'Meter fault',
        meter_battery_low: 'Meter battery low',
        meter_valve_fault: 'Meter valve fault',
        volume_fell: 'Volume fell',
        volume_rollover: 'Volume rollover',
        volume_suspected_swap: 'Suspected meter swap',
        valve_command_failed: 'Valve command failed',
        valve_uncommanded: 'Uncommanded valve move',
        abnormal_usage: 'Abnormal usage',
        night_flow: 'Continuous night flow',
        zone_leakage: 'Zone leakage',
      },
    },
  };

  function loadLang() {
    try {
      const saved = localStorage.getItem(LANG_KEY);
      if (saved === 'zh' || saved === 'en') return saved;
    } catch (_) {
      // Storage disabled: the default language.
    }
    return 'zh';
  }

  let lang = loadLang();

  function t(key, vars) {
    let s = I18N[lang][key];
    if (s === undefined) s = I18N.en[key];
    if (typeof s !== 'string') return key;
    return s.replace(/\{(\w+)\}/g, (m, k) => (vars && vars[k] !== undefined ? String(vars[k]) : m));
  }

  function named(table, key) {
    const own = I18N[lang][table];
    if (own && typeof own[key] === 'string') return own[key];
    return typeof key === 'string' ? key : '';
  }

  function alarmId(a) {
    return a.key.class + '~' + a.key.device + '~' + a.key.detail;
  }

  // What an alarm is, in words: class, device and detail (parameter or meter).
  function describe(a) {
    const parts = [named('class', a.key.class), a.key.device];
    if (a.key.detail) parts.push(a.key.detail);
    return parts.join(' · ');
  }

  function isUnacked(a) {
    return UNACKED.indexOf(a.state) >= 0;
  }

  // Most urgent first, then newest first.
  function compare(a, b) {
    return (RANK[b.priority] || 0) - (RANK[a.priority] || 0) || (b.since || 0) - (a.since || 0);
  }

  // ---------------------------------------------------------------------------
  // State: the standing alarms (from the snapshot and every alarm frame) and the stream's health.
  // ---------------------------------------------------------------------------
  const state = {
    alarms: new Map(),
    epoch: null,
    seq: null,
    lastFrameAt: 0,
    heartbeatMs: DEFAULT_HEARTBEAT_MS,
    open: false,
    raised: [],
    sounding: new Set(),
    silenced: false,
  };
  const listeners = [];

  function notify(msg) {
    for (const fn of listeners) {
      try {
        fn(msg);
      } catch (e) {
        console.error('waterworks banner listener', e);
      }
    }
  }

  // A snapshot of the same epoch (a resync after falling behind) keeps what the operator silenced; a first
  // snapshot (page load, server restart) sounds every unacknowledged alarm.
  function applySnapshot(msg, sameEpoch) {
    const known = new Map(state.alarms);
    const wasSounding = new Set(state.sounding);
    state.alarms.clear();
    state.sounding.clear();
    const now = Date.now();
    state.raised = [];
    for (const a of Array.isArray(msg.alarms) ? msg.alarms : []) {
      if (!a || !a.key) continue;
      const id = alarmId(a);
      state.alarms.set(id, a);
      if (isUnacked(a) && (!sameEpoch || wasSounding.has(id) || !known.has(id))) state.sounding.add(id);
      if (typeof a.raised_at === 'number' && now - a.raised_at < FLOOD_WINDOW_MS) state.raised.push(a.raised_at);
    }
    if (!sameEpoch || state.sounding.size > 0) state.silenced = false;
  }

  function applyAlarm(msg) {
    if (typeof msg.id !== 'string') return;
    if (msg.alarm && msg.alarm.key) state.alarms.set(msg.id, msg.alarm);
    else state.alarms.delete(msg.id);
    const rec = msg.record || {};
    if (rec.what === 'activated') state.raised.push(typeof rec.at === 'number' ? rec.at : Date.now());
    const a = state.alarms.get(msg.id);
    if (a && isUnacked(a) && (rec.to === 'unacknowledged' || rec.what === 'activated')) {
      // A new (or returning) alarm sounds, even after a silence.
      state.sounding.add(msg.id);
      state.silenced = false;
    } else if (!a || !isUnacked(a)) {
      state.sounding.delete(msg.id);
    }
  }

  function handle(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (_) {
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    state.lastFrameAt = Date.now();
    const seq = typeof msg.seq === 'number' ? msg.seq : null;
    switch (msg.type) {
      case 'snapshot': {
        const epoch = typeof msg.epoch === 'string' ? msg.epoch : null;
        applySnapshot(msg, epoch !== null && epoch === state.epoch);
        state.epoch = epoch;
        break;
      }
      case 'alarm':
        if (seq !== null && state.seq !== null && seq <= state.seq) return;
        applyAlarm(msg);
        break;
      case 'heartbeat':
        if (typeof msg.every_ms === 'number' && msg.every_ms > 0) state.heartbeatMs = msg.every_ms;
        renderLive();
        return;
      case 'resync':
        return;
      default:
        if (seq !== null) state.seq = Math.max(state.seq || 0, seq);
        return;
    }
    if (seq !== null) state.seq = seq;
    render();
    notify(msg);
  }

  // ---------------------------------------------------------------------------
  // Connection: one socket, capped backoff, resume from epoch + seq.
  // ---------------------------------------------------------------------------
  const conn = { ws: null, attempt: 0, timer: null };

  function wsUrl() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let url = proto + '//' + location.host + '/ws';
    if (state.epoch !== null && state.seq !== null) {
      url += '?since=' + encodeURIComponent(state.seq) + '&epoch=' + encodeURIComponent(state.epoch);
    }
    return url;
  }

  function connect() {
    conn.timer = null;
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (_) {
      reconnect();
      return;
    }
    conn.ws = ws;
    ws.onopen = () => {
      state.open = true;
      state.lastFrameAt = Date.now();
      conn.attempt = 0;
      renderLive();
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === 'string') handle(ev.data);
    };
    ws.onclose = () => {
      if (conn.ws !== ws) return;
      conn.ws = null;
      state.open = false;
      renderLive();
      reconnect();
    };
  }

  function reconnect() {
    if (conn.timer !== null) return;
    const delay = Math.min(10000, 500 * Math.pow(2, conn.attempt)) * (0.8 + Math.random() * 0.4);
    conn.attempt = Math.min(conn.attempt + 1, 10);
    conn.timer = setTimeout(connect, delay);
  }

  // ---------------------------------------------------------------------------
  // The annunciator.
  // ---------------------------------------------------------------------------
  const audio = { ctx: null, lastAt: 0 };

  function unlockAudio() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    try {
      if (!audio.ctx) audio.ctx = new Ctx();
      if (audio.ctx.state === 'suspended') audio.ctx.resume();
    } catch (_) {
      audio.ctx = null;
    }
    renderSound();
  }

  // The priority that sounds now, or null.
  function soundingPriority() {
    if (state.silenced) return null;
    let best = null;
    for (const id of state.sounding) {
      const a = state.alarms.get(id);
      if (!a || !isUnacked(a)) continue;
      if (best === null || (RANK[a.priority] || 0) > (RANK[best] || 0)) best = a.priority;
    }
    return best;
  }

  function beep(tone) {
    const ctx = audio.ctx;
    if (!ctx || ctx.state !== 'running') return;
    const start = ctx.currentTime + 0.01;
    for (let i = 0; i < tone.beeps; i++) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = 'square';
      osc.frequency.value = tone.hz;
      const at = start + i * tone.len * 2;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.2, at + 0.01);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + tone.len);
      osc.connect(gain).connect(ctx.destination);
      osc.start(at);
      osc.stop(at + tone.len + 0.02);
    }
  }

  function annunciate() {
    const p = soundingPriority();
    if (p === null) return;
    const tone = TONES[p] || TONES.low;
    const now = Date.now();
    if (now - audio.lastAt < tone.every) return;
    audio.lastAt = now;
    beep(tone);
  }

  function silence() {
    state.silenced = true;
    state.sounding.clear();
    render();
  }

  // ---------------------------------------------------------------------------
  // Rendering.
  // ---------------------------------------------------------------------------
  let root = null;

  function el(tag, cls, attrs) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    return e;
  }

  function build() {
    root = el('div', 'ab', { id: 'alarm-banner', role: 'region' });
    const live = el('span', 'ab-live', { id: 'ab-live', role: 'status' });
    live.append(el('span', 'ab-dot', { 'aria-hidden': 'true' }), el('span', 'ab-live-text'));
    const top = el('a', 'ab-top', { id: 'ab-top', href: '/alarms' });
    top.append(el('span', 'ab-prio'), el('span', 'ab-text'), el('time', 'ab-time'));
    const counts = el('span', 'ab-counts', { id: 'ab-counts' });
    for (const p of PRIORITIES) {
      const c = el('a', 'ab-count', { href: '/alarms', 'data-count-priority': p });
      c.append(el('span', 'ab-count-l'), el('span', 'ab-count-n'));
      counts.append(c);
    }
    const flood = el('span', 'ab-flood', { id: 'ab-flood', role: 'status' });
    flood.hidden = true;
    const silenceBtn = el('button', 'ab-silence', { id: 'ab-silence', type: 'button' });
    silenceBtn.addEventListener('click', silence);
    const list = el('a', 'ab-list', { id: 'ab-list', href: '/alarms' });
    const sound = el('span', 'ab-sound', { id: 'ab-sound' });
    root.append(live, top, flood, counts, silenceBtn, list, sound);
    document.body.prepend(root);
  }

  function setText(e, s) {
    if (e.textContent !== s) e.textContent = s;
  }

  function fmtTime(ms) {
    if (typeof ms !== 'number') return '';
    const d = new Date(ms);
    const two = (n) => String(n).padStart(2, '0');
    return two(d.getHours()) + ':' + two(d.getMinutes()) + ':' + two(d.getSeconds());
  }

  function liveState() {
    if (!state.open) return 'reconnecting';
    return Date.now() - state.lastFrameAt > STALL_FACTOR * state.heartbeatMs ? 'stalled' : 'live';
  }

  function renderLive() {
    if (!root) return;
    const s = liveState();
    const e = root.querySelector('#ab-live');
    e.dataset.state = s;
    setText(e.querySelector('.ab-live-text'), t(s));
    root.dataset.live = s;
  }

  function renderSound() {
    if (!root) return;
    const p = soundingPriority();
    root.dataset.soundingPriority = p || '';
    let s = 'off';
    if (state.silenced) s = 'silenced';
    else if (p !== null) s = audio.ctx && audio.ctx.state === 'running' ? 'on' : 'blocked';
    root.dataset.sound = s;
    const hint = root.querySelector('#ab-sound');
    setText(hint, s === 'blocked' ? t('sound_blocked') : '');
    hint.hidden = s !== 'blocked';
    const btn = root.querySelector('#ab-silence');
    setText(btn, state.silenced ? t('silenced') : t('silence'));
    btn.disabled = p === null;
    btn.setAttribute('aria-pressed', state.silenced ? 'true' : 'false');
  }

  function render() {
    if (!root) return;
    root.setAttribute('aria-label', t('banner'));
    const unacked = [...state.alarms.values()].filter(isUnacked).sort(compare);
    const top = unacked[0];
    const topEl = root.querySelector('#ab-top');
    topEl.setAttribute('aria-label', t('top_label'));
    if (top) {
      topEl.dataset.priority = top.priority;
      topEl.dataset.alarm = alarmId(top);
      setText(topEl.querySelector('.ab-prio'), named('priority', top.priority));
      setText(topEl.querySelector('.ab-text'), describe(top));
      setText(topEl.querySelector('.ab-time'), fmtTime(top.raised_at || top.since));
    } else {
      topEl.dataset.priority = 'none';
      topEl.dataset.alarm = '';
      setText(topEl.querySelector('.ab-prio'), '');
      setText(topEl.querySelector('.ab-text'), t('no_alarms'));
      setText(topEl.querySelector('.ab-time'), '');
    }
    root.dataset.top = top ? top.priority : 'none';
    for (const c of root.querySelectorAll('[data-count-priority]')) {
      const p = c.dataset.countPriority;
      const n = unacked.filter((a) => a.priority === p).length;
      c.dataset.n = String(n);
      setText(c.querySelector('.ab-count-l'), named('priority', p));
      setText(c.querySelector('.ab-count-n'), String(n));
      c.setAttribute('aria-label', t('count_label', { p: named('priority', p), n: n }));
    }
    const now = Date.now();
    state.raised = state.raised.filter((at) => now - at < FLOOD_WINDOW_MS);
    const flood = root.querySelector('#ab-flood');
    const n = state.raised.length;
    flood.hidden = n < FLOOD_COUNT;
    flood.dataset.n = String(n);
    setText(flood, n >= FLOOD_COUNT ? t('flood', { n: n, m: FLOOD_WINDOW_MS / 60000 }) : '');
    setText(root.querySelector('#ab-list'), t('open_list'));
    renderLive();
    renderSound();
  }

  function setLang(next) {
    if (next !== 'zh' && next !== 'en') return;
    lang = next;
    render();
    notify({ type: 'lang' });
  }

  function start() {
    build();
    render();
    // The page's own language switch (every page has `.lang-switch button[data-lang]`) switches the banner too.
    document.addEventListener('click', (e) => {
      const b = e.target && e.target.closest ? e.target.closest('.lang-switch [data-lang]') : null;
      if (b) setLang(b.dataset.lang);
    });
    // Sound needs a user gesture first.
    for (const kind of ['pointerdown', 'keydown']) document.addEventListener(kind, unlockAudio, { passive: true });
    setInterval(() => {
      renderLive();
      renderSound();
      annunciate();
    }, 500);
    connect();
  }

  // What the alarms page (alarms.js) reads: the live alarm set, the dictionaries, and changes.
  window.WaterworksAlarms = {
    alarms: () => [...state.alarms.values()],
    ready: () => state.epoch !== null,
    alarmId: alarmId,
    describe: (a) => describe(a),
    label: (table, key) => named(table, key),
    lang: () => lang,
    setLang: (next) => setLang(next),
    compare: compare,
    onChange: (fn) => listeners.push(fn),
  };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
