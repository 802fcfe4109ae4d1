/*
 * Waterworks control-room HMI (level-1 overview with per-device detail).
 *
 * What it does: asks /api/me who is logged in, opens the /ws live stream, keeps the
 * last snapshot plus deltas in memory and renders one panel per region with one card
 * per device. A delta touches only its own card, its region header and the summary.
 *
 * Commands: the one thing it sends is a valve command (open/close, or reset of a latched
 * fault), and only for roles that may command (admin, operator), only after a confirmation
 * dialog with a reason. Open/close are disabled while the valve is comm-lost.
 * The request waits for the valve's read-back (up to its confirm timeout, a minute in
 * production); meanwhile the card says so and the rest of the page keeps working.
 *
 * What it deliberately does not do: it holds no credentials (the session cookie is
 * HttpOnly) and never builds HTML from strings: every piece of server text goes
 * through textContent or setAttribute, so nothing from the wire can become markup.
 *
 * Colour follows ISA-101: normal is grey, colour only for what is abnormal
 * (comm lost red, stale/partial collection amber, out-of-limit quality flashing red,
 * valve travelling amber, valve fault flashing red, backup communication path amber).
 */
'use strict';

(function () {
  // ---------------------------------------------------------------------------
  // Dictionary. Every visible string lives here; {name} placeholders are filled by t().
  // ---------------------------------------------------------------------------
  const I18N = {
    zh: {
      title: '智慧水务监控',
      skip_to_regions: '跳到设备总览',
      language: '语言',
      summary: '概况',
      conn_live: '实时',
      conn_connecting: '连接中',
      conn_reconnecting: '重新连接中',
      conn_resync: '重新同步中',
      conn_stalled: '数据流停滞',
      alarms_link: '报警',
      last_update: '最后更新',
      user: '用户',
      logout: '退出登录',
      account_link: '我的账户',
      kpi_link: '报警绩效',
      admin_link: '用户管理',
      alarm_settings_link: '报警设置',
      devices_link: '设备与趋势',
      audit_link: '审计日志',
      usage_link: '用水与漏损',
      sum_devices: '设备总数',
      sum_comm_lost: '通信中断',
      sum_wq_out: '水质超限',
      sum_collection: '采集异常',
      sum_regions: '区域数',
      waiting: '等待数据…',
      no_devices: '暂无设备',
      unassigned_region: '未分配区域',
      region_collection: '采集进度',
      region_no_concentrators: '无抄表设备',
      region_comm_lost: '通信中断 {n}',
      kind_concentrator: '集中器',
      kind_logger: '数据采集仪',
      kind_valve: '阀门',
      kind_cjt188_gateway: 'CJ/T 188 网关',
      kind_cjt188_line: 'CJ/T 188 串口线路',
      kind_mqtt_group: 'MQTT 表组',
      kind_hj212_station: 'HJ 212 水质站',
      valve_position: '阀位',
      valve_state: {
        open: '全开',
        closed: '全关',
        opening: '正在打开',
        closing: '正在关闭',
        fault: '故障',
        unknown: '状态未知',
      },
      valve_action: {
        open: '打开',
        close: '关闭',
        reset: '复位故障',
      },
      valve_result: {
        confirmed: '已确认',
        already_in_position: '已在该位置（未下发）',
        failed: '失败',
      },
      valve_controls: '{name} 的操作',
      btn_label: '{action} {name}',
      last_command: '最近命令',
      no_command: '无',
      cmd_result: '结果',
      cmd_reason: '原因',
      cmd_failure: '失败原因',
      cmd_reason_unknown: '（服务器未提供）',
      cmd_in_progress: '命令执行中…',
      cmd_in_progress_detail: '{action}，等待阀门回读确认，已 {n} 秒',
      err_forbidden: '无权操作阀门：只有管理员和值班员可以下发命令。',
      err_bad_request: '命令被拒绝：{msg}',
      err_not_found: '服务器上没有这个阀门：{msg}',
      err_session: '登录已过期，请重新登录。命令未下发。',
      err_network: '网络错误：命令结果未知。请先查看阀门状态再操作。',
      err_server: '服务器错误（HTTP {status}）：{msg}',
      err_conflict: '未执行：{msg}',
      sum_valve_fault: '阀门故障',
      region_valve_fault: '阀门故障 {n}',
      ev_valve_fault: '阀门故障',
      ev_valve_fault_cleared: '阀门故障解除',
      ev_valve_moved: '阀位变化',
      dlg_title: '确认{action}阀门',
      dlg_valve: '阀门',
      dlg_action: '操作',
      dlg_state: '当前状态',
      dlg_reason: '原因（必填）',
      dlg_count: '{n} / {max}',
      dlg_note: '确认后命令立即下发，服务器等待阀门回读确认（最长约一分钟）。',
      dlg_confirm: '确认{action}',
      dlg_cancel: '取消',
      comm_lost_badge: '通信中断',
      status_normal: '正常',
      status_comm_lost: '通信中断',
      status_link_down: '链路断开',
      status_misses: '连续漏采 {n} 次',
      status_incomplete: '采集未完成',
      status_stale: '数据陈旧',
      status_label: '状态：{s}',
      cycle_progress: '本周期采集',
      last_success: '最近成功',
      last_attempt: '最近尝试',
      misses: '连续漏采',
      link: '链路',
      link_up: '正常',
      link_down: '断开',
      link_unknown: '未知',
      path: '通道',
      last_error: '最近错误',
      err_meter: '表 {meter}：{text}',
      err_timeout: '{ms} 毫秒内无应答',
      err_connect_timeout: '{ms} 毫秒内未能连接',
      err_connection_refused: '连接被拒绝',
      err_connect_failed: '无法连接：{detail}',
      err_connection_closed: '设备关闭了连接',
      err_transport: '传输错误：{detail}',
      err_exception: '设备拒绝请求（异常码 {code}）',
      err_garbage_reply: '应答报文无效',
      err_bad_reply: '应答内容不符：{detail}',
      err_crc_error: '应答校验错误',
      err_abnormal_reply: '表计异常应答（控制码 {control}）',
      err_bad_value: '数值无效：{detail}',
      err_no_data: '{s} 秒内未收到数据',
      err_store_unavailable: '数据库暂不可用，稍后重试',
      err_internal: '内部错误，连接将重建',
      err_valve_not_confirmed: '{s} 秒内未确认到位（最后回读：{seen}）',
      err_valve_reports_fault: '阀门报告故障',
      err_command_interrupted: '命令执行中服务器停止，结果未知',
      err_stage_before_command: '命令前无法读取阀门：{text}',
      err_stage_refused: '阀门拒绝了命令：{text}',
      err_stage_not_sent: '命令未能发送：{text}',
      valve_seen_moving: '动作中',
      valve_seen_other: '代码 {code}',
      valve_seen_nothing: '无',
      meters_toggle: '表计（{n}）',
      meters_table: '{name} 的表计读数',
      col_meter: '表号',
      col_volume: '累计水量 (m³)',
      col_time: '读数时间',
      col_status: '状态',
      col_param: '参数',
      col_value: '数值',
      col_limits: '限值',
      col_position: '位置',
      no_meters: '无表计',
      no_values: '无监测参数',
      breach_low: '低于下限 {v}',
      breach_high: '超过上限 {v}',
      not_sampled: '未采样',
      stale_values: '数据已过期',
      events: '事件',
      no_events: '暂无事件',
      ev_comm_lost: '通信中断',
      ev_comm_restored: '通信恢复',
      ev_meter_comm_lost: '表计通信中断',
      ev_meter_comm_restored: '表计通信恢复',
      meter_comm_lost: '表计通信中断',
      meter_not_read: '未抄到（{n} 个周期）',
      ev_path_switched: '通信链路切换',
      ev_actor_restart: '进程重启',
      ev_limit_crossed: '水质超限',
      ev_limit_cleared: '水质恢复',
      evm_comm_lost: '连续 {misses} 个周期未收到数据',
      evm_comm_restored: '中断 {after_misses} 个周期后恢复',
      evm_meter_comm_lost: '表 {meter} 连续 {misses} 个周期未抄到',
      evm_meter_comm_restored: '表 {meter} 中断 {after_misses} 个周期后恢复',
      evm_path_failover: '{from} 故障，已切换到 {to}',
      evm_path_primary: '主通道恢复，由 {from} 切回 {to}',
      evm_actor_restart: '{supervisor}/{child} 停止（{reason}），{delay} 毫秒后重启',
      evm_limit_low: '{parameter} {value} {unit} 低于下限 {limit}',
      evm_limit_high: '{parameter} {value} {unit} 超过上限 {limit}',
      evm_limit_cleared: '{parameter} {value} {unit} 恢复到限值以内',
      evm_valve_read_back: '回读阀位：{state}',
      evm_valve_reset: '{by} 复位：{reason}',
      evm_valve_uncommanded: '无命令阀位变化：{from} → {to}',
      evm_valve_commanded: '按命令到位：{to}（原为{from}）',
      evm_with_error: '{text}：{error}',
      lost_now: '当前通信中断：{list}',
      evf_region: '区域',
      evf_kind: '类型',
      evf_device: '设备',
      evf_from: '从',
      evf_to: '到',
      evf_all: '全部',
      evf_search: '查询',
      evf_live: '实时',
      evf_history: '历史查询结果（{n} 条）；实时事件暂停显示',
      evf_failed: '查询失败：{why}',
      path_backup: '正在使用备用通道',
      age_now: '刚刚',
      age_s: '{n} 秒前',
      age_min: '{n} 分钟前',
      age_h: '{n} 小时前',
      age_d: '{n} 天前',
      params: {
        free_chlorine: '游离氯',
        turbidity: '浑浊度',
        ph: 'pH',
        dissolved_oxygen: '溶解氧',
        ammonia: '氨(以N计)',
        lead: '铅',
        cadmium: '镉',
        arsenic: '砷',
        mercury: '汞',
        chromium6: '六价铬',
        temperature: '水温',
        conductivity: '电导率',
      },
      meter_status: {
        valve_closed: '阀门关',
        battery_low: '电池欠压',
        magnetic_tamper: '磁干扰',
        reverse_flow: '倒流',
        meter_fault: '表故障',
        valve_fault: '阀门故障',
        status_unreadable: '状态无法解析',
        time_from_arrival: '时间取自接收',
        volume_fell: '读数回退',
        rollover: '表码翻转',
        suspected_swap: '疑似换表',
        needs_review: '待审核（不计水量）',
      },
      roles: {
        admin: '管理员',
        operator: '值班员',
        manager: '管理人员',
        crew: '维修班组',
        billing: '营业收费',
      },
    },
    en: {
      title: 'Waterworks SCADA',
      skip_to_regions: 'Skip to the device overview',
      language: 'Language',
      summary: 'Summary',
      conn_live: 'Live',
      conn_connecting: 'Connecting',
      conn_reconnecting: 'Reconnecting',
      conn_resync: 'Resynchronising',
      conn_stalled: 'Stream stalled',
      alarms_link: 'Alarms',
      last_update: 'Last update',
      user: 'User',
      logout: 'Log out',
      account_link: 'My account',
      kpi_link: 'Alarm KPIs',
      admin_link: 'Users',
      alarm_settings_link: 'Alarm settings',
      devices_link: 'Devices & trends',
      audit_link: 'Audit journal',
      usage_link: 'Usage and leakage',
      sum_devices: 'Devices',
      sum_comm_lost: 'Comm lost',
      sum_wq_out: 'Quality out of limits',
      sum_collection: 'Collection issues',
      sum_regions: 'Regions',
      waiting: 'Waiting for data…',
      no_devices: 'No devices',
      unassigned_region: 'Unassigned region',
      region_collection: 'Collection',
      region_no_concentrators: 'no meter readers',
      region_comm_lost: 'Comm lost {n}',
      kind_concentrator: 'Concentrator',
      kind_logger: 'Data logger',
      kind_valve: 'Valve',
      kind_cjt188_gateway: 'CJ/T 188 gateway',
      kind_cjt188_line: 'CJ/T 188 serial line',
      kind_mqtt_group: 'MQTT meter group',
      kind_hj212_station: 'HJ 212 station',
      valve_position: 'Position',
      valve_state: {
        open: 'Open',
        closed: 'Closed',
        opening: 'Opening',
        closing: 'Closing',
        fault: 'FAULT',
        unknown: 'Unknown',
      },
      valve_action: {
        open: 'Open',
        close: 'Close',
        reset: 'Reset fault',
      },
      valve_result: {
        confirmed: 'Confirmed',
        already_in_position: 'Already in position (nothing sent)',
        failed: 'Failed',
      },
      valve_controls: 'Commands for {name}',
      btn_label: '{action} {name}',
      last_command: 'Last command',
      no_command: 'none',
      cmd_result: 'Result',
      cmd_reason: 'Reason',
      cmd_failure: 'Failure',
      cmd_reason_unknown: '(not sent by the server)',
      cmd_in_progress: 'Command in progress…',
      cmd_in_progress_detail: '{action}: waiting for the valve to confirm, {n} s so far',
      err_forbidden: 'Not allowed: only administrators and operators may command valves.',
      err_bad_request: 'Command rejected: {msg}',
      err_not_found: 'The server has no such valve: {msg}',
      err_session: 'Your session has expired; please log in again. Nothing was sent.',
      err_network: 'Network error: the outcome is unknown. Check the valve state before trying again.',
      err_server: 'Server error (HTTP {status}): {msg}',
      err_conflict: 'Not done: {msg}',
      sum_valve_fault: 'Valve faults',
      region_valve_fault: 'Valve faults {n}',
      ev_valve_fault: 'Valve fault',
      ev_valve_fault_cleared: 'Valve fault cleared',
      ev_valve_moved: 'Valve moved',
      dlg_title: 'Confirm valve command: {action}',
      dlg_valve: 'Valve',
      dlg_action: 'Action',
      dlg_state: 'Current state',
      dlg_reason: 'Reason (required)',
      dlg_count: '{n} / {max}',
      dlg_note: 'The command is sent at once; the server then waits for the valve to confirm its position (up to about a minute).',
      dlg_confirm: '{action} valve',
      dlg_cancel: 'Cancel',
      comm_lost_badge: 'COMM LOST',
      status_normal: 'Normal',
      status_comm_lost: 'Comm lost',
      status_link_down: 'Link down',
      status_misses: 'Missed cycles: {n}',
      status_incomplete: 'Cycle incomplete',
      status_stale: 'Stale data',
      status_label: 'Status: {s}',
      cycle_progress: 'This cycle',
      last_success: 'Last success',
      last_attempt: 'Last attempt',
      misses: 'Consecutive misses',
      link: 'Link',
      link_up: 'up',
      link_down: 'down',
      link_unknown: 'unknown',
      path: 'Path',
      last_error: 'Last error',
      err_meter: 'meter {meter}: {text}',
      err_timeout: 'no reply within {ms} ms',
      err_connect_timeout: 'no connection within {ms} ms',
      err_connection_refused: 'connection refused',
      err_connect_failed: 'cannot connect: {detail}',
      err_connection_closed: 'connection closed by device',
      err_transport: 'transport error: {detail}',
      err_exception: 'the device refused the request (exception {code})',
      err_garbage_reply: 'invalid reply',
      err_bad_reply: 'unexpected reply: {detail}',
      err_crc_error: 'reply checksum error',
      err_abnormal_reply: 'the meter answered abnormally (control {control})',
      err_bad_value: 'invalid value: {detail}',
      err_no_data: 'no data within {s} s',
      err_store_unavailable: 'store unavailable; will retry',
      err_internal: 'internal error; the connection is renewed',
      err_valve_not_confirmed: 'not confirmed within {s} s (last read back: {seen})',
      err_valve_reports_fault: 'the valve reports a fault',
      err_command_interrupted: 'the server stopped during the command; its result is unknown',
      err_stage_before_command: 'valve unreachable before the command: {text}',
      err_stage_refused: 'the valve refused the command: {text}',
      err_stage_not_sent: 'the command could not be sent: {text}',
      valve_seen_moving: 'moving',
      valve_seen_other: 'code {code}',
      valve_seen_nothing: 'nothing',
      meters_toggle: 'Meters ({n})',
      meters_table: 'Meter readings of {name}',
      col_meter: 'Meter',
      col_volume: 'Volume (m³)',
      col_time: 'Reading time',
      col_status: 'Status',
      col_param: 'Parameter',
      col_value: 'Value',
      col_limits: 'Limits',
      col_position: 'Position',
      no_meters: 'No meters',
      no_values: 'No parameters',
      breach_low: 'Below low limit {v}',
      breach_high: 'Above high limit {v}',
      not_sampled: 'not sampled',
      stale_values: 'Values are stale',
      events: 'Events',
      no_events: 'No events',
      ev_comm_lost: 'Comm lost',
      ev_comm_restored: 'Comm restored',
      ev_meter_comm_lost: 'Meter comm lost',
      ev_meter_comm_restored: 'Meter comm restored',
      meter_comm_lost: 'meter comm lost',
      meter_not_read: 'not read ({n} cycles)',
      ev_path_switched: 'Path switched',
      ev_actor_restart: 'Actor restarted',
      ev_limit_crossed: 'Limit crossed',
      ev_limit_cleared: 'Back within limits',
      evm_comm_lost: '{misses} consecutive cycles missed',
      evm_comm_restored: 'data flows again after {after_misses} missed cycles',
      evm_meter_comm_lost: 'meter {meter}: {misses} consecutive cycles missed',
      evm_meter_comm_restored: 'meter {meter}: data flows again after {after_misses} missed cycles',
      evm_path_failover: '{from} failed; now on {to}',
      evm_path_primary: 'primary answers again; back from {from} to {to}',
      evm_actor_restart: '{supervisor}/{child} {reason}; restart in {delay} ms',
      evm_limit_low: '{parameter} {value} {unit} below its low limit {limit}',
      evm_limit_high: '{parameter} {value} {unit} above its high limit {limit}',
      evm_limit_cleared: '{parameter} {value} {unit} back within its limits',
      evm_valve_read_back: 'read back {state}',
      evm_valve_reset: 'reset by {by}: {reason}',
      evm_valve_uncommanded: 'moved without a command: {from} → {to}',
      evm_valve_commanded: '{to} as commanded (was {from})',
      evm_with_error: '{text}: {error}',
      lost_now: 'Comm lost now: {list}',
      evf_region: 'Region',
      evf_kind: 'Kind',
      evf_device: 'Device',
      evf_from: 'From',
      evf_to: 'To',
      evf_all: 'All',
      evf_search: 'Search',
      evf_live: 'Live',
      evf_history: 'Search results ({n}); live events paused',
      evf_failed: 'Search failed: {why}',
      path_backup: 'On a backup path',
      age_now: 'just now',
      age_s: '{n} s ago',
      age_min: '{n} min ago',
      age_h: '{n} h ago',
      age_d: '{n} d ago',
      params: {
        free_chlorine: 'Free chlorine',
        turbidity: 'Turbidity',
        ph: 'pH',
        dissolved_oxygen: 'Dissolved oxygen',
        ammonia: 'Ammonia (as N)',
        lead: 'Lead',
        cadmium: 'Cadmium',
        arsenic: 'Arsenic',
        mercury: 'Mercury',
        chromium6: 'Chromium(VI)',
        temperature: 'Water temperature',
        conductivity: 'Conductivity',
      },
      meter_status: {
        valve_closed: 'valve closed',
        battery_low: 'battery low',
        magnetic_tamper: 'magnetic tamper',
        reverse_flow: 'reverse flow',
        meter_fault: 'meter fault',
        valve_fault: 'valve fault',
        status_unreadable: 'status unreadable',
        time_from_arrival: 'time of arrival',
        volume_fell: 'volume fell',
        rollover: 'register rollover',
        suspected_swap: 'suspected meter swap',
        needs_review: 'needs review (not billed)',
      },
      roles: {
        admin: 'Administrator',
        operator: 'Operator',
        manager: 'Manager',
        crew: 'Repair crew',
        billing: 'Billing',
      },
    },
  };

  const LANG_KEY = 'waterworks.lang';
  const MAX_EVENTS = 100;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  // A connection that stays open this long counts as healthy and resets the backoff,
  // so a server that accepts and immediately drops us cannot make us spin at 0.5 s.
  const STABLE_CONN_MS = 5000;
  // A device is "stale" (amber) when its last success is older than this many cycles.
  const STALE_CYCLES = 2;
  const STALE_GRACE_MS = 5000;
  // Roles that may command valves (the server checks too; this only hides the buttons).
  const COMMAND_ROLES = ['admin', 'operator'];
  // The longest reason the server takes, in characters.
  const REASON_MAX = 500;
  const VALVE_STATES = ['open', 'closed', 'opening', 'closing', 'fault', 'unknown'];

  let lang = loadLang();

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
    if (vars) {
      s = s.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
    }
    return s;
  }

  function lookup(table, name) {
    const own = I18N[lang][table];
    if (own && Object.prototype.hasOwnProperty.call(own, name)) return own[name];
    return String(name);
  }

  const paramLabel = (p) => lookup('params', p);
  const roleLabel = (r) => lookup('roles', r);
  const valveStateLabel = (s) => lookup('valve_state', s);
  const valveActionLabel = (a) => lookup('valve_action', a);
  const valveResultLabel = (r) => lookup('valve_result', r);

  // ---------------------------------------------------------------------------
  // Small DOM helpers. Strings are only ever set as text nodes or attribute values.
  // ---------------------------------------------------------------------------
  function h(tag, props, children) {
    const e = document.createElement(tag);
    if (props) {
      for (const key of Object.keys(props)) {
        const v = props[key];
        if (v === null || v === undefined || v === false) continue;
        if (key === 'class') e.className = v;
        else if (key === 'text') e.textContent = v;
        else e.setAttribute(key, v === true ? '' : String(v));
      }
    }
    if (children) {
      for (const c of children) if (c !== null && c !== undefined) e.append(c);
    }
    return e;
  }

  function setText(e, s) {
    s = s === null || s === undefined ? '' : String(s);
    if (e.textContent !== s) e.textContent = s;
  }

  function setAttr(e, name, value) {
    if (value === null || value === undefined) {
      if (e.hasAttribute(name)) e.removeAttribute(name);
      return;
    }
    value = String(value);
    if (e.getAttribute(name) !== value) e.setAttribute(name, value);
  }

  const byId = (id) => document.getElementById(id);

  let uidCounter = 0;
  const uid = (prefix) => prefix + '-' + ++uidCounter;

  // ---------------------------------------------------------------------------
  // Formatting.
  // ---------------------------------------------------------------------------
  const pad2 = (n) => String(n).padStart(2, '0');

  function toNumber(v) {
    if (v === null || v === undefined || v === '') return null;
    const n = typeof v === 'number' ? v : Number(v);
    return Number.isFinite(n) ? n : null;
  }

  function fmtTime(ms) {
    const n = toNumber(ms);
    if (n === null) return '—';
    const d = new Date(n);
    if (Number.isNaN(d.getTime())) return '—';
    return (
      d.getFullYear() + '-' + pad2(d.getMonth() + 1) + '-' + pad2(d.getDate()) + ' ' +
      pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds())
    );
  }

  function fmtAge(ms, now) {
    const n = toNumber(ms);
    if (n === null) return '';
    const s = Math.floor((now - n) / 1000);
    if (s < 5) return t('age_now'); // Also covers small clock skew into the future.
    if (s < 60) return t('age_s', { n: s });
    const m = Math.floor(s / 60);
    if (m < 60) return t('age_min', { n: m });
    const hr = Math.floor(m / 60);
    if (hr < 48) return t('age_h', { n: hr });
    return t('age_d', { n: Math.floor(hr / 24) });
  }

  // Three significant digits, never rounding away integer digits: 0.52 -> "0.520",
  // 7.21 -> "7.21", 18.5 -> "18.5", 450 -> "450", 0.0002 -> "0.000200".
  function fmtValue(v) {
    const n = toNumber(v);
    if (n === null) return '—';
    if (n === 0) return '0';
    const magnitude = Math.floor(Math.log10(Math.abs(n)));
    const decimals = Math.min(6, Math.max(0, 2 - magnitude));
    return n.toFixed(decimals);
  }

  // Limits read better without padding zeros: 0.3, 2, 6.5.
  function fmtLimit(v) {
    const n = toNumber(v);
    if (n === null) return '';
    return String(Number(fmtValue(n)));
  }

  function fmtLimits(low, high) {
    const lo = toNumber(low);
    const hi = toNumber(high);
    if (lo !== null && hi !== null) return fmtLimit(lo) + ' – ' + fmtLimit(hi);
    if (hi !== null) return '≤ ' + fmtLimit(hi);
    if (lo !== null) return '≥ ' + fmtLimit(lo);
    return '—';
  }

  // ---------------------------------------------------------------------------
  // Domain judgements (pure functions of the device and the clock).
  // ---------------------------------------------------------------------------
  const asArray = (v) => (Array.isArray(v) ? v : []);

  // Which limit a parameter breaks, if any. A value outside [low, high] counts even
  // when the server sent no flag; a server flag counts even when the value is null.
  function breachOf(p) {
    const flags = asArray(p.flags);
    const v = toNumber(p.value);
    const low = toNumber(p.low);
    const high = toNumber(p.high);
    if (flags.includes('low') || (v !== null && low !== null && v < low)) return 'low';
    if (flags.includes('high') || (v !== null && high !== null && v > high)) return 'high';
    return null;
  }

  // The last error in the page's language: a known `last_error_code` through its template with
  // `last_error_params` (and the meter it concerns), otherwise the server's English text as it came.
  function errorTextOf(c) {
    return codedText(c.last_error_code, c.last_error_params, c.last_error);
  }

  // A server text with a code (`ErrorCode`) and its parameters in the page's language; `fallback` (the
  // server's English text) when the page knows no template for the code. Used for device errors, a valve
  // command's failure and a valve fault event (issue 7 §7). `params` may come as JSON text (event params).
  function codedText(code, params, fallback) {
    code = typeof code === 'string' ? code : null;
    const key = code ? 'err_' + code : null;
    if (!key || I18N[lang][key] === undefined) return typeof fallback === 'string' ? fallback : '';
    if (typeof params === 'string') {
      try {
        params = JSON.parse(params);
      } catch (_) {
        params = null;
      }
    }
    params = params && typeof params === 'object' ? params : {};
    const vars = Object.assign({}, params);
    const ms = toNumber(params.ms);
    if (ms !== null) vars.s = Math.round(ms / 100) / 10;
    if (typeof params.seen === 'string') {
      const seen = params.seen;
      vars.seen = seen === 'open' || seen === 'closed' || seen === 'fault' ? valveStateLabel(seen)
        : I18N[lang]['valve_seen_' + seen] !== undefined ? t('valve_seen_' + seen, { code: params.code }) : seen;
    }
    let text = t(key, vars);
    if (typeof params.meter === 'string') text = t('err_meter', { meter: params.meter, text: text });
    if (typeof params.stage === 'string' && I18N[lang]['err_stage_' + params.stage] !== undefined) {
      text = t('err_stage_' + params.stage, { text: text });
    }
    return text;
  }

  function commOf(d) {
    return d && d.comm && typeof d.comm === 'object' ? d.comm : {};
  }

  // Kinds whose view lists meters (read by the server or pushed to it); each has its own label.
  const METER_KINDS = ['concentrator', 'cjt188_gateway', 'cjt188_line', 'mqtt_group'];
  const KIND_LABELS = {
    concentrator: 'kind_concentrator',
    logger: 'kind_logger',
    valve: 'kind_valve',
    cjt188_gateway: 'kind_cjt188_gateway',
    cjt188_line: 'kind_cjt188_line',
    mqtt_group: 'kind_mqtt_group',
    hj212_station: 'kind_hj212_station',
  };
  const hasMeters = (d) => METER_KINDS.includes(d.kind);

  // The card layout of a device. Anything that neither lists meters nor is a valve
  // is shown like a logger (a values table), as before valves existed.
  function cardKindOf(d) {
    if (hasMeters(d)) return 'conc';
    if (d.kind === 'valve') return 'valve';
    return 'logger';
  }

  function valveOf(d) {
    return d && d.valve && typeof d.valve === 'object' ? d.valve : {};
  }

  function valveStateOf(d) {
    const s = String(valveOf(d).state || 'unknown');
    return VALVE_STATES.includes(s) ? s : 'unknown';
  }

  // Paths are "primary …" or "backup N …"; a backup in use is worth a glance.
  const isBackupPath = (path) => typeof path === 'string' && path.startsWith('backup');

  // level: "lost" (red), "warn" (amber) or "ok" (grey); reasons: dictionary keys + vars.
  function deviceStatus(d, now) {
    const c = commOf(d);
    if (c.comm_lost) return { level: 'lost', reasons: [['status_comm_lost']] };
    const reasons = [];
    if (c.link === 'down') reasons.push(['status_link_down']);
    const misses = toNumber(c.consecutive_misses) || 0;
    if (misses > 0) reasons.push(['status_misses', { n: misses }]);
    const read = toNumber(c.cycle_read);
    const expected = toNumber(c.cycle_expected);
    if (read !== null && expected !== null && read < expected) reasons.push(['status_incomplete']);
    const last = toNumber(c.last_success);
    const cycle = toNumber(c.cycle_ms);
    if (last !== null && cycle !== null && cycle > 0 && now - last > STALE_CYCLES * cycle + STALE_GRACE_MS) {
      reasons.push(['status_stale']);
    }
    return { level: reasons.length ? 'warn' : 'ok', reasons: reasons };
  }

  function statusText(st) {
    if (st.level === 'ok') return t('status_normal');
    return st.reasons.map((r) => t(r[0], r[1])).join(' · ');
  }

  // Where the analog indicator's scale starts and ends, given the limits. The normal
  // band sits in the middle so that an excursion on either side is visible.
  function analogScale(low, high) {
    let lo;
    let hi;
    if (low !== null && high !== null) {
      const span = high - low || Math.abs(high) || 1;
      lo = low - span * 0.25;
      hi = high + span * 0.25;
      if (low >= 0 && lo < 0) lo = 0;
    } else if (high !== null) {
      lo = Math.min(0, high);
      hi = high > 0 ? high * 1.5 : high + 1;
    } else if (low !== null) {
      lo = Math.min(0, low);
      hi = low > 0 ? low * 2 : low + 1;
    } else {
      return null;
    }
    if (!(hi > lo)) hi = lo + 1;
    return { lo: lo, hi: hi };
  }

  // ---------------------------------------------------------------------------
  // State.
  // ---------------------------------------------------------------------------
  const state = {
    epoch: null, // string from the last snapshot
    seq: null, // last applied sequence number
    regions: [], // [{id, name}] in snapshot order
    devices: new Map(), // id -> device JSON
    order: [], // device ids in snapshot order (new ids appended)
    events: [], // newest first, at most MAX_EVENTS
    searching: false, // the events list shows search results, not the live feed
    lastUpdate: null, // client time of the last applied message
    user: null,
    connState: 'connecting', // connecting | live | reconnecting
    resyncing: false,
    // Issue 9 §4: client time of the last frame or heartbeat, and the server's heartbeat interval; silence
    // for HEARTBEAT_STALL intervals while the socket looks open is "stalled", not "live".
    lastFrameAt: 0,
    heartbeatMs: 5000,
  };
  const HEARTBEAT_STALL = 2.5;

  function stalled() {
    return state.connState === 'live' && Date.now() - state.lastFrameAt > HEARTBEAT_STALL * state.heartbeatMs;
  }

  const expanded = new Set(); // device ids whose meter table is open
  const deviceViews = new Map(); // id -> view (see createDeviceView)
  const regionViews = new Map(); // region id -> view (see createRegionView)
  const UNASSIGNED = '\u0000unassigned';

  // Valve commands of this page, by valve id: {phase: 'pending'|'done'|'error', action,
  // reason, since (client ms), record (the server's reply), message ([key, vars])}.
  // Kept outside the views so that a re-render (language switch, snapshot) keeps them.
  const valveOps = new Map();
  // The confirmation dialog's subject while it is open.
  const dialog = { id: null, action: null, opener: null };

  // ---------------------------------------------------------------------------
  // Region panels.
  // ---------------------------------------------------------------------------
  function regionName(id) {
    if (id === UNASSIGNED) return t('unassigned_region');
    const r = state.regions.find((x) => x.id === id);
    return r && r.name ? r.name : String(id);
  }

  function createRegionView(id) {
    const titleId = uid('region');
    const v = {};
    v.name = h('h2', { class: 'region-name', id: titleId });
    v.barFill = h('span', { class: 'bar-fill' });
    v.bar = h('span', { class: 'region-progress bar', role: 'progressbar', 'aria-valuemin': 0 }, [v.barFill]);
    v.barText = h('span', { class: 'region-progress-text num' });
    v.barLabel = h('span', { class: 'region-progress-label' });
    v.lost = h('span', { class: 'region-lost' });
    v.valveFault = h('span', { class: 'region-lost region-valve-fault alarm', hidden: true });
    // Issue 9 §4: every abnormal state of the region, counted, linking to its abnormal devices.
    v.rollup = h('a', { class: 'region-rollup', href: '/devices?abnormal=1' + (id === UNASSIGNED ? '' : '&region=' + encodeURIComponent(id)) });
    v.cards = h('div', { class: 'cards' });
    v.root = h('section', { class: 'region', 'data-region': id === UNASSIGNED ? '' : id, 'aria-labelledby': titleId }, [
      h('header', { class: 'region-head' }, [
        v.name,
        h('span', { class: 'region-collection' }, [v.barLabel, v.bar, v.barText]),
        v.lost,
        v.valveFault,
        v.rollup,
      ]),
      v.cards,
    ]);
    v.id = id;
    return v;
  }

  function ensureRegionView(id) {
    let v = regionViews.get(id);
    if (!v) {
      v = createRegionView(id);
      regionViews.set(id, v);
      byId('regions').append(v.root);
      updateRegionView(id);
    }
    return v;
  }

  function regionKeyOf(d) {
    const id = d && d.region != null ? String(d.region) : '';
    return state.regions.some((r) => r.id === id) ? id : UNASSIGNED;
  }

  function updateRegionView(id) {
    const v = regionViews.get(id);
    if (!v) return;
    let read = 0;
    let expected = 0;
    let concentrators = 0;
    let lost = 0;
    let valveFault = 0;
    for (const d of state.devices.values()) {
      if (regionKeyOf(d) !== id) continue;
      const c = commOf(d);
      if (c.comm_lost) lost++;
      if (d.kind === 'valve' && valveStateOf(d) === 'fault') valveFault++;
      if (hasMeters(d)) {
        concentrators++;
        read += toNumber(c.cycle_read) || 0;
        expected += toNumber(c.cycle_expected) || 0;
      }
    }
    setText(v.name, regionName(id));
    setText(v.barLabel, t('region_collection'));
    if (concentrators === 0) {
      v.bar.hidden = true;
      setText(v.barText, t('region_no_concentrators'));
    } else {
      v.bar.hidden = false;
      const pct = expected > 0 ? Math.min(100, (read / expected) * 100) : 0;
      v.barFill.style.width = pct.toFixed(1) + '%';
      setAttr(v.bar, 'aria-valuemax', expected);
      setAttr(v.bar, 'aria-valuenow', read);
      setAttr(v.bar, 'aria-label', t('region_collection'));
      v.bar.classList.toggle('incomplete', read < expected);
      setText(v.barText, read + ' / ' + expected + (expected > 0 ? ' (' + Math.floor(pct) + '%)' : ''));
    }
    setText(v.lost, t('region_comm_lost', { n: lost }));
    v.lost.classList.toggle('alarm', lost > 0);
    v.root.classList.toggle('has-lost', lost > 0);
    setText(v.valveFault, t('region_valve_fault', { n: valveFault }));
    v.valveFault.hidden = valveFault === 0;
    updateRollup(v, id);
  }

  // The region's roll-up (issue 9 §4): per abnormal category (comm, quality, valve fault, meter flags; the one
  // rule of console-common.js `WW.abnormal`) the count in the region, and how many devices have any.
  function updateRollup(v, id) {
    const WW = window.WW;
    if (!WW) return;
    const sum = {};
    let devices = 0;
    for (const d of state.devices.values()) {
      if (regionKeyOf(d) !== id) continue;
      const ab = WW.abnormal(d);
      if (ab.total > 0) devices++;
      for (const k of WW.ABNORMAL_KEYS) if (ab[k] > 0) sum[k] = (sum[k] || 0) + ab[k];
    }
    const parts = WW.ABNORMAL_KEYS.filter((k) => sum[k] > 0).map((k) => WW.tIn(lang, 'ab_' + k) + ' ' + sum[k]);
    setText(v.rollup, devices ? WW.tIn(lang, 'rollup_link', { n: devices }) + ': ' + parts.join(' · ') : WW.tIn(lang, 'rollup_none'));
    v.rollup.classList.toggle('alarm', devices > 0);
    v.rollup.dataset.abnormal = String(devices);
    for (const k of WW.ABNORMAL_KEYS) v.rollup.dataset[k] = String(sum[k] || 0);
  }

  // ---------------------------------------------------------------------------
  // Device cards. A view is built once per device and then updated in place, so a
  // delta costs one card and keeps focus and scroll position where they were.
  // ---------------------------------------------------------------------------
  function kv(labelKey, valueEl, extraClass) {
    const dt = h('dt', { 'data-key': labelKey });
    const dd = h('dd', null, [valueEl]);
    const wrap = h('div', { class: 'kv' + (extraClass ? ' ' + extraClass : '') }, [dt, dd]);
    return { wrap: wrap, dt: dt, dd: dd };
  }

  function timeWithAge(cls) {
    const time = h('time', { class: 'ts' });
    const age = h('span', { class: 'age' + (cls ? ' ' + cls : '') });
    return { root: h('span', { class: 'when' }, [time, ' ', age]), time: time, age: age };
  }

  function setTimeWithAge(tw, ms, now) {
    const n = toNumber(ms);
    setText(tw.time, fmtTime(n));
    setAttr(tw.time, 'datetime', n === null ? null : new Date(n).toISOString());
    setAttr(tw.age, 'data-ts', n);
    setText(tw.age, n === null ? '' : fmtAge(n, now));
  }

  function createDeviceView(d) {
    const kind = cardKindOf(d);
    const isConc = kind === 'conc';
    const nameId = uid('dev');
    const v = { id: d.id, kindClass: kind, isConc: isConc, meterRows: new Map(), paramRows: new Map() };

    v.light = h('span', { class: 'light', role: 'img' });
    v.name = h('h3', { class: 'dev-name', id: nameId });
    v.idEl = h('span', { class: 'dev-id' });
    v.kindEl = h('span', { class: 'dev-kind' });
    v.statusEl = h('span', { class: 'dev-status' });
    v.badge = h('span', { class: 'lost-badge', hidden: true });
    const head = h('header', { class: 'card-head' }, [
      v.light,
      h('div', { class: 'dev-title' }, [v.name, h('span', { class: 'dev-sub' }, [v.kindEl, ' · ', v.idEl])]),
      v.statusEl,
      v.badge,
    ]);

    // Communication facts, common to both kinds.
    v.lastSuccess = timeWithAge();
    v.missesEl = h('span', { class: 'num' });
    v.linkEl = h('span');
    v.pathEl = h('span', { class: 'path' });
    v.errorEl = h('span', { class: 'error-text' });
    v.kvSuccess = kv('last_success', v.lastSuccess.root);
    v.kvMisses = kv('misses', v.missesEl);
    v.kvLink = kv('link', h('span', null, [v.linkEl, ' · ', v.pathEl]));
    v.kvError = kv('last_error', v.errorEl, 'kv-error');
    v.kvs = [v.kvSuccess, v.kvMisses, v.kvLink, v.kvError];

    // Cycle progress: the `.progress` hook is reserved for concentrators; loggers get
    // the same bar under another class so that tests counting `.progress` stay exact.
    v.progressFill = h('span', { class: 'bar-fill' });
    v.progress = h('span', {
      class: (isConc ? 'progress' : 'cycle-bar') + ' bar',
      role: 'progressbar',
      'aria-valuemin': 0,
    }, [v.progressFill]);
    v.progressText = h('span', { class: 'progress-text num' });
    v.kvCycle = kv('cycle_progress', h('span', { class: 'progress-wrap' }, [v.progress, v.progressText]), 'kv-cycle');

    const facts = h('dl', { class: 'facts' }, [v.kvCycle.wrap].concat(v.kvs.map((x) => x.wrap)));
    const body = [head];
    if (kind === 'valve') body.push(...createValveParts(v));
    body.push(facts);

    if (isConc) {
      const sectionId = uid('meters');
      v.toggle = h('button', {
        type: 'button',
        class: 'meters-toggle',
        'aria-expanded': 'false',
        'aria-controls': sectionId,
      });
      v.toggle.addEventListener('click', () => toggleMeters(d.id));
      v.meterHead = {
        id: h('th', { scope: 'col' }),
        volume: h('th', { scope: 'col', class: 'num' }),
        time: h('th', { scope: 'col' }),
        status: h('th', { scope: 'col' }),
      };
      v.meterBody = h('tbody');
      v.meterCaption = h('caption', { class: 'visually-hidden' });
      v.noMeters = h('p', { class: 'placeholder', hidden: true });
      v.meterTable = h('table', { class: 'meter-table' }, [
        v.meterCaption,
        h('thead', null, [h('tr', null, [v.meterHead.id, v.meterHead.volume, v.meterHead.time, v.meterHead.status])]),
        v.meterBody,
      ]);
      // Rows exist even while the section is hidden, so they can be read without a click.
      v.meters = h('div', { class: 'meters', id: sectionId, hidden: true, tabindex: 0 }, [v.noMeters, v.meterTable]);
      body.push(h('div', { class: 'meters-bar' }, [v.toggle]), v.meters);
    } else if (kind === 'logger') {
      v.valHead = {
        param: h('th', { scope: 'col' }),
        value: h('th', { scope: 'col', class: 'num' }),
        limits: h('th', { scope: 'col', class: 'num' }),
        position: h('th', { scope: 'col' }),
        time: h('th', { scope: 'col' }),
      };
      v.valBody = h('tbody');
      v.noValues = h('p', { class: 'placeholder', hidden: true });
      v.staleNote = h('p', { class: 'stale-note', hidden: true });
      v.valTable = h('table', { class: 'value-table' }, [
        h('thead', null, [h('tr', null, [v.valHead.param, v.valHead.value, v.valHead.limits, v.valHead.position, v.valHead.time])]),
        v.valBody,
      ]);
      body.push(h('div', { class: 'values' }, [v.staleNote, v.noValues, v.valTable]));
    }

    v.root = h('article', {
      class: 'card ' + kind,
      'data-device': d.id,
      'data-comm-lost': 'false',
      'aria-labelledby': nameId,
    }, body);
    return v;
  }

  function updateDeviceView(v, d, now) {
    const c = commOf(d);
    const lost = !!c.comm_lost;
    const st = deviceStatus(d, now);

    v.root.dataset.commLost = lost ? 'true' : 'false';
    v.root.classList.toggle('comm-lost', lost);
    v.root.classList.toggle('warn', st.level === 'warn');
    v.root.classList.toggle('expanded', !!v.isConc && expanded.has(v.id));

    setText(v.name, d.name || d.id);
    setText(v.idEl, d.id);
    const kindKey = Object.prototype.hasOwnProperty.call(KIND_LABELS, d.kind) ? KIND_LABELS[d.kind] : null;
    setText(v.kindEl, kindKey ? t(kindKey) : String(d.kind || ''));
    applyStatus(v, st);
    setText(v.badge, t('comm_lost_badge'));
    v.badge.hidden = !lost;

    // Facts.
    for (const x of v.kvs.concat([v.kvCycle])) setText(x.dt, t(x.dt.dataset.key));
    setTimeWithAge(v.lastSuccess, c.last_success, now);
    const misses = toNumber(c.consecutive_misses) || 0;
    setText(v.missesEl, misses);
    v.missesEl.classList.toggle('warn-text', misses > 0 && !lost);
    const link = c.link === 'up' || c.link === 'down' ? c.link : 'unknown';
    setText(v.linkEl, t('link_' + link));
    v.linkEl.classList.toggle('warn-text', link === 'down' && !lost);
    setText(v.pathEl, c.path || '—');
    const backup = isBackupPath(c.path);
    v.pathEl.classList.toggle('path-backup', backup);
    setAttr(v.pathEl, 'title', backup ? t('path_backup') : null);
    const err = c.last_error;
    v.kvError.wrap.hidden = err === null || err === undefined || err === '';
    setText(v.errorEl, err ? errorTextOf(c) : '');
    setAttr(v.errorEl, 'data-error-code', err && c.last_error_code ? c.last_error_code : null);

    const read = toNumber(c.cycle_read);
    const expectedN = toNumber(c.cycle_expected);
    const readN = read === null ? 0 : read;
    const exp = expectedN === null ? 0 : expectedN;
    setAttr(v.progress, 'data-read', readN);
    setAttr(v.progress, 'data-expected', exp);
    setAttr(v.progress, 'aria-valuenow', readN);
    setAttr(v.progress, 'aria-valuemax', exp);
    setAttr(v.progress, 'aria-label', t('cycle_progress'));
    v.progress.classList.toggle('incomplete', readN < exp);
    v.progressFill.style.width = (exp > 0 ? Math.min(100, (readN / exp) * 100) : 0).toFixed(1) + '%';
    setText(v.progressText, readN + ' / ' + exp);
    // A logger without a cycle count has nothing to show here, nor a valve (one read).
    v.kvCycle.wrap.hidden = v.kindClass === 'valve' || (!v.isConc && expectedN === null);

    if (v.isConc) updateMeters(v, d, now);
    else if (v.kindClass === 'valve') updateValve(v, d, now);
    else updateValues(v, d, now, lost);
  }

  function applyStatus(v, st) {
    const text = statusText(st);
    v.light.className = 'light light-' + st.level;
    setAttr(v.light, 'aria-label', t('status_label', { s: text }));
    setAttr(v.light, 'title', text);
    // Report by exception: the text appears only when something is wrong.
    setText(v.statusEl, st.level === 'ok' ? '' : text);
    v.statusEl.className = 'dev-status' + (st.level === 'warn' ? ' warn-text' : st.level === 'lost' ? ' lost-text' : '');
    v.statusLevel = st.level;
  }

  // Keeps the children of `parent` in the order of `rows` with the fewest moves.
  function reorder(parent, rows) {
    let cursor = parent.firstChild;
    for (const row of rows) {
      if (row === cursor) cursor = cursor.nextSibling;
      else parent.insertBefore(row, cursor);
    }
    while (cursor) {
      const next = cursor.nextSibling;
      cursor.remove();
      cursor = next;
    }
  }

  function updateMeters(v, d, now) {
    const meters = asArray(d.meters);
    const open = expanded.has(v.id);
    setText(v.toggle, t('meters_toggle', { n: meters.length }));
    setAttr(v.toggle, 'aria-expanded', open ? 'true' : 'false');
    v.meters.hidden = !open;
    setText(v.meterCaption, t('meters_table', { name: d.name || d.id }));
    setAttr(v.meters, 'aria-label', t('meters_table', { name: d.name || d.id }));
    setText(v.meterHead.id, t('col_meter'));
    setText(v.meterHead.volume, t('col_volume'));
    setText(v.meterHead.time, t('col_time'));
    setText(v.meterHead.status, t('col_status'));
    v.noMeters.hidden = meters.length > 0;
    v.meterTable.hidden = meters.length === 0;
    setText(v.noMeters, t('no_meters'));
    if (!open) {
      // Meter rows exist only while the table is open (issue 9 §4): 12,000 meters in closed cards cost
      // nothing but their count.
      if (v.meterRows.size) {
        v.meterRows.clear();
        v.meterBody.replaceChildren();
      }
      return;
    }

    const seen = new Set();
    const rows = [];
    for (const m of meters) {
      if (!m || m.id === null || m.id === undefined) continue;
      const id = String(m.id);
      if (seen.has(id)) continue; // A duplicate id would make the hook ambiguous.
      seen.add(id);
      let r = v.meterRows.get(id);
      if (!r) {
        r = {
          id: h('th', { scope: 'row', class: 'meter-id', text: id }),
          volume: h('td', { class: 'volume num' }),
          when: timeWithAge('m-age'),
          tags: h('td', { class: 'tags' }),
          tagKey: null,
        };
        r.row = h('tr', { 'data-meter': id }, [r.id, r.volume, h('td', { class: 'meter-time' }, [r.when.root]), r.tags]);
        v.meterRows.set(id, r);
      }
      // Volumes are decimal strings (rust_decimal); they are shown as sent, never via float.
      setText(r.volume, m.volume_m3 === null || m.volume_m3 === undefined ? '—' : String(m.volume_m3));
      setTimeWithAge(r.when, m.ts, now);
      const status = asArray(m.status).map(String);
      // The meter's own comm status (issue 7 §4): lost on its own, or not read for some cycles (its own
      // misses, or its device's while the device is comm-lost).
      const missed = toNumber(m.missed_cycles) || 0;
      const comm = m.comm_lost === true ? 'lost' : missed > 0 ? 'unread' : 'ok';
      const key = lang + '|' + comm + '|' + missed + '|' + status.join('|');
      if (r.tagKey !== key) {
        r.tagKey = key;
        const commTag =
          comm === 'lost'
            ? h('span', { class: 'tag tag-lost', 'data-comm': 'lost', text: t('meter_comm_lost') })
            : comm === 'unread'
              ? h('span', { class: 'tag tag-warn', 'data-comm': 'unread', text: t('meter_not_read', { n: missed }) })
              : null;
        r.tags.replaceChildren(...(commTag ? [commTag] : []), ...status.map(meterTag));
      }
      r.row.classList.toggle('meter-lost', comm === 'lost');
      rows.push(r.row);
    }
    for (const id of Array.from(v.meterRows.keys())) if (!seen.has(id)) v.meterRows.delete(id);
    reorder(v.meterBody, rows);
  }

  function meterTag(name) {
    const known = Object.prototype.hasOwnProperty.call(I18N.en.meter_status, name);
    return h('span', { class: 'tag' + (known ? ' tag-warn' : ''), 'data-status': name, text: lookup('meter_status', name) });
  }

  function updateValues(v, d, now, lost) {
    const values = asArray(d.values);
    setText(v.valHead.param, t('col_param'));
    setText(v.valHead.value, t('col_value'));
    setText(v.valHead.limits, t('col_limits'));
    setText(v.valHead.position, t('col_position'));
    setText(v.valHead.time, t('col_time'));
    v.noValues.hidden = values.length > 0;
    v.valTable.hidden = values.length === 0;
    setText(v.noValues, t('no_values'));
    v.staleNote.hidden = !lost;
    setText(v.staleNote, t('stale_values'));

    const seen = new Set();
    const rows = [];
    for (const p of values) {
      if (!p || p.param === null || p.param === undefined) continue;
      const param = String(p.param);
      if (seen.has(param)) continue;
      seen.add(param);
      let r = v.paramRows.get(param);
      if (!r) {
        r = {
          label: h('th', { scope: 'row', class: 'param' }),
          value: h('span', { class: 'value num' }),
          unit: h('span', { class: 'unit' }),
          breach: h('span', { class: 'breach' }),
          flags: h('span', { class: 'flags' }),
          limits: h('td', { class: 'limits num' }),
          band: h('span', { class: 'analog-band' }),
          marker: h('span', { class: 'analog-marker' }),
          when: timeWithAge(),
          flagKey: null,
        };
        r.analog = h('span', { class: 'analog', 'aria-hidden': 'true' }, [r.band, r.marker]);
        r.row = h('tr', { 'data-param': param }, [
          r.label,
          h('td', { class: 'val-cell' }, [h('span', { class: 'val-line' }, [r.value, ' ', r.unit]), r.breach, r.flags]),
          r.limits,
          h('td', { class: 'analog-cell' }, [r.analog]),
          h('td', { class: 'val-time' }, [r.when.root]),
        ]);
        v.paramRows.set(param, r);
      }
      const value = toNumber(p.value);
      const low = toNumber(p.low);
      const high = toNumber(p.high);
      const breach = breachOf(p);
      setText(r.label, paramLabel(param));
      setText(r.value, fmtValue(value));
      setAttr(r.value, 'title', value === null ? t('not_sampled') : null);
      setText(r.unit, p.unit || '');
      setText(r.limits, fmtLimits(low, high));
      setText(r.breach, breach === 'low' ? t('breach_low', { v: fmtLimit(low) || '' }) : breach === 'high' ? t('breach_high', { v: fmtLimit(high) || '' }) : '');
      r.breach.hidden = !breach;
      r.row.classList.toggle('out-of-limit', !!breach);
      setAttr(r.row, 'data-breach', breach);

      const otherFlags = asArray(p.flags).map(String).filter((f) => f !== 'low' && f !== 'high');
      const fk = otherFlags.join('|');
      if (r.flagKey !== fk) {
        r.flagKey = fk;
        r.flags.replaceChildren(...otherFlags.map((f) => h('span', { class: 'tag tag-warn', text: f })));
      }

      drawAnalog(r, value, low, high, breach);
      setTimeWithAge(r.when, p.ts, now);
      rows.push(r.row);
    }
    for (const id of Array.from(v.paramRows.keys())) if (!seen.has(id)) v.paramRows.delete(id);
    reorder(v.valBody, rows);
  }

  function drawAnalog(r, value, low, high, breach) {
    const scale = analogScale(low, high);
    r.analog.hidden = scale === null;
    if (!scale) return;
    const pos = (x) => Math.max(0, Math.min(100, ((x - scale.lo) / (scale.hi - scale.lo)) * 100));
    const a = pos(low === null ? scale.lo : low);
    const b = pos(high === null ? scale.hi : high);
    r.band.style.left = a.toFixed(1) + '%';
    r.band.style.width = Math.max(0, b - a).toFixed(1) + '%';
    r.marker.hidden = value === null;
    if (value !== null) {
      r.marker.style.left = pos(value).toFixed(1) + '%';
      r.marker.classList.toggle('off-scale', value < scale.lo || value > scale.hi);
    }
    r.marker.classList.toggle('abnormal', !!breach);
  }

  function toggleMeters(id) {
    if (expanded.has(id)) expanded.delete(id);
    else expanded.add(id);
    const v = deviceViews.get(id);
    const d = state.devices.get(id);
    if (!v || !d) return;
    const open = expanded.has(id);
    v.root.classList.toggle('expanded', open);
    updateMeters(v, d, Date.now()); // builds the rows on opening, drops them on closing
    v.meters.hidden = !open;
    setAttr(v.toggle, 'aria-expanded', open ? 'true' : 'false');
    if (open) refreshAges(v.meters.querySelectorAll('.age'), Date.now());
  }

  // ---------------------------------------------------------------------------
  // Valves: position, last command, and (for roles that may) Open / Close with a
  // confirmation dialog. The position is grey at its end positions, amber while
  // travelling or unknown, red and gently flashing on fault.
  // ---------------------------------------------------------------------------
  const SVG_NS = 'http://www.w3.org/2000/svg';

  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const key of Object.keys(attrs)) e.setAttribute(key, String(attrs[key]));
    return e;
  }

  // The ISA valve symbol, two triangles point to point on a pipe under an actuator
  // stem. CSS fills it by state: hollow open, solid closed, amber travelling, red fault.
  function valveSymbol() {
    const svg = svgEl('svg', { class: 'valve-symbol', viewBox: '0 0 48 30', 'aria-hidden': 'true', focusable: 'false' });
    svg.append(
      svgEl('line', { class: 'vs-pipe', x1: 0, y1: 20, x2: 8, y2: 20 }),
      svgEl('line', { class: 'vs-pipe', x1: 40, y1: 20, x2: 48, y2: 20 }),
      svgEl('line', { class: 'vs-stem', x1: 24, y1: 20, x2: 24, y2: 5 }),
      svgEl('line', { class: 'vs-stem', x1: 17, y1: 5, x2: 31, y2: 5 }),
      svgEl('polygon', { class: 'vs-body', points: '8,11 24,20 40,11 40,29 24,20 8,29' })
    );
    return svg;
  }

  function createValveParts(v) {
    v.valveStateText = h('span', { class: 'valve-state-text' });
    v.valvePosLabel = h('span', { class: 'valve-pos-label' });
    v.valveState = h('div', { class: 'valve-state' }, [
      valveSymbol(),
      h('span', { class: 'valve-state-words' }, [v.valvePosLabel, v.valveStateText]),
    ]);
    v.controlsSlot = h('div', { class: 'valve-controls-slot' });
    // Says what this page is waiting for, or why its request failed. Focused after a
    // confirmation, so that a screen reader lands where the outcome will appear. The
    // live region itself always exists: one that appears with its text is not announced.
    v.feedbackTitle = h('span', { class: 'cmd-progress-title' });
    // The ticking seconds stay out of the live region, or it would be read out every second.
    v.feedbackDetail = h('span', { class: 'cmd-progress-detail', 'aria-hidden': 'true' });
    v.feedbackBar = h('span', { class: 'cmd-progress-bar', 'aria-hidden': 'true' });
    v.feedback = h('div', { class: 'valve-feedback', tabindex: -1, hidden: true }, [
      v.feedbackTitle,
      ' ',
      v.feedbackDetail,
      v.feedbackBar,
    ]);

    v.cmdSummary = h('span', { class: 'cmd-summary' });
    v.cmdWhen = timeWithAge();
    v.cmdResult = h('span', { class: 'cmd-result' });
    v.cmdReason = h('span', { class: 'cmd-reason' });
    v.cmdFailure = h('span', { class: 'cmd-failure' });
    v.kvCommand = kv('last_command', h('span', null, [v.cmdSummary, ' ', v.cmdWhen.root]), 'kv-command');
    v.kvResult = kv('cmd_result', v.cmdResult, 'kv-result');
    v.kvFailure = kv('cmd_failure', v.cmdFailure, 'kv-failure');
    v.kvReason = kv('cmd_reason', v.cmdReason, 'kv-reason');
    v.cmdKvs = [v.kvCommand, v.kvResult, v.kvFailure, v.kvReason];
    return [
      h('div', { class: 'valve-main' }, [v.valveState, v.controlsSlot]),
      h('div', { class: 'valve-live', role: 'status' }, [v.feedback]),
      h('dl', { class: 'facts cmd-facts' }, v.cmdKvs.map((x) => x.wrap)),
    ];
  }

  const canCommand = () => !!state.user && COMMAND_ROLES.includes(state.user.role);

  // Buttons exist only for roles that may command; other roles get none at all.
  function syncValveControls(v) {
    const want = canCommand();
    if (want && !v.controls) {
      const open = h('button', { type: 'button', class: 'valve-btn', 'data-action': 'open' });
      const close = h('button', { type: 'button', class: 'valve-btn', 'data-action': 'close' });
      // Reset of a latched fault: shown only while the valve is in fault.
      const reset = h('button', { type: 'button', class: 'valve-btn valve-reset', 'data-action': 'reset', hidden: true });
      open.addEventListener('click', () => openValveDialog(v.id, 'open', open));
      close.addEventListener('click', () => openValveDialog(v.id, 'close', close));
      reset.addEventListener('click', () => openValveDialog(v.id, 'reset', reset));
      v.btnOpen = open;
      v.btnClose = close;
      v.btnReset = reset;
      v.controls = h('div', { class: 'valve-controls', role: 'group' }, [open, close, reset]);
      v.controlsSlot.append(v.controls);
    } else if (!want && v.controls) {
      v.controls.remove();
      v.controls = v.btnOpen = v.btnClose = v.btnReset = null;
    }
  }

  // The record to show: the newer of the server's last command and this page's reply.
  function newerRecord(a, b) {
    const ok = (r) => r && typeof r === 'object';
    if (!ok(a)) return ok(b) ? b : null;
    if (!ok(b)) return a;
    const at = (r) => toNumber(r.finished_at) ?? toNumber(r.requested_at) ?? 0;
    return at(b) > at(a) ? b : a;
  }

  // The operator's reason and the failure text of a command record: the server sends the
  // operator's `reason` and, for a failed command, the failure text as `error`.
  function commandTexts(id, rec) {
    const reason = typeof rec.reason === 'string' ? rec.reason : null;
    const failure = rec.result === 'failed' && typeof rec.error === 'string'
      ? codedText(rec.error_code, rec.error_params, rec.error) : null;
    return { operator: reason, failure: failure };
  }

  function updateValve(v, d, now) {
    const id = v.id;
    const st = valveStateOf(d);
    const op = valveOps.get(id);
    const pending = !!op && op.phase === 'pending';
    const name = d.name || id;

    v.root.dataset.valveState = st;
    v.valveState.dataset.state = st;
    setText(v.valvePosLabel, t('valve_position'));
    setText(v.valveStateText, valveStateLabel(st));

    syncValveControls(v);
    if (v.controls) {
      const travelling = st === 'opening' || st === 'closing';
      // A comm-lost valve cannot be commanded: the command could not reach it (issue 7 §5).
      const lost = !!commOf(d).comm_lost;
      setAttr(v.controls, 'aria-label', t('valve_controls', { name: name }));
      for (const [btn, action, end] of [[v.btnOpen, 'open', 'open'], [v.btnClose, 'close', 'closed']]) {
        const label = valveActionLabel(action);
        setText(btn, label);
        setAttr(btn, 'aria-label', t('btn_label', { action: label, name: name }));
        const disabled = pending || travelling || lost || st === end;
        if (btn.disabled !== disabled) btn.disabled = disabled;
      }
      const resetLabel = valveActionLabel('reset');
      setText(v.btnReset, resetLabel);
      setAttr(v.btnReset, 'aria-label', t('btn_label', { action: resetLabel, name: name }));
      v.btnReset.hidden = st !== 'fault';
      if (v.btnReset.disabled !== pending) v.btnReset.disabled = pending;
    }

    // This page's request: in flight, or failed before the valve could answer.
    v.root.dataset.command = op ? op.phase : 'none';
    v.feedback.hidden = !op || op.phase === 'done';
    v.feedback.className = 'valve-feedback' + (op && op.phase === 'error' ? ' cmd-error' : op && pending ? ' cmd-pending' : '');
    v.feedbackBar.hidden = !pending;
    if (pending) {
      setText(v.feedbackTitle, t('cmd_in_progress'));
      const n = Math.max(0, Math.floor((now - op.since) / 1000));
      setText(v.feedbackDetail, t('cmd_in_progress_detail', { action: valveActionLabel(op.action), n: n }));
    } else if (op && op.phase === 'error') {
      setText(v.feedbackTitle, t(op.message[0], op.message[1]));
      setText(v.feedbackDetail, '');
    }

    // The last command, as the server recorded it.
    for (const x of v.cmdKvs) setText(x.dt, t(x.dt.dataset.key));
    const rec = newerRecord(valveOf(d).last_command, op && op.record);
    const result = rec ? String(rec.result || '') : '';
    setAttr(v.root, 'data-last-result', rec ? result : null);
    v.kvResult.wrap.hidden = !rec;
    v.kvReason.wrap.hidden = !rec;
    v.kvFailure.wrap.hidden = !rec || result !== 'failed';
    v.cmdWhen.root.hidden = !rec;
    if (!rec) {
      setText(v.cmdSummary, t('no_command'));
      setTimeWithAge(v.cmdWhen, null, now);
      return;
    }
    const texts = commandTexts(id, rec);
    setText(v.cmdSummary, valveActionLabel(String(rec.action || '')) + ' · ' + (rec.requested_by || '—'));
    setTimeWithAge(v.cmdWhen, rec.requested_at, now);
    setText(v.cmdResult, valveResultLabel(result));
    v.cmdResult.className = 'cmd-result' + (result === 'failed' ? ' cmd-failed' : '');
    setText(v.cmdFailure, texts.failure || '—');
    setText(v.cmdReason, texts.operator === null ? t('cmd_reason_unknown') : texts.operator);
    v.cmdReason.classList.toggle('unknown', texts.operator === null);
  }

  function refreshValve(id) {
    const v = deviceViews.get(id);
    const d = state.devices.get(id);
    if (v && d && v.kindClass === 'valve') updateValve(v, d, Date.now());
  }

  function refreshAllValves() {
    const now = Date.now();
    for (const [id, v] of deviceViews) {
      const d = state.devices.get(id);
      if (d && v.kindClass === 'valve') updateValve(v, d, now);
    }
  }

  // Confirmation dialog: names the valve and the action; nothing is sent without a
  // reason and an explicit Confirm. Esc, Cancel and the backdrop's inertness all mean no.
  function openValveDialog(id, action, opener) {
    const dlg = byId('valve-dialog');
    if (!dlg || dlg.open || !canCommand() || !state.devices.has(id)) return;
    const op = valveOps.get(id);
    if (op && op.phase === 'pending') return;
    dialog.id = id;
    dialog.action = action;
    dialog.opener = opener || null;
    const reason = byId('vd-reason');
    reason.value = '';
    dlg.returnValue = '';
    renderValveDialog();
    dlg.showModal();
    reason.focus();
  }

  function renderValveDialog() {
    if (dialog.id === null) return;
    const dlg = byId('valve-dialog');
    const d = state.devices.get(dialog.id) || { id: dialog.id };
    const action = valveActionLabel(dialog.action);
    dlg.dataset.valve = dialog.id;
    dlg.dataset.action = dialog.action;
    setText(byId('vd-title'), t('dlg_title', { action: action }));
    setText(byId('vd-valve-name'), d.name || d.id);
    setText(byId('vd-valve-id'), d.id);
    setText(byId('vd-action'), action);
    const st = valveStateOf(d);
    const stateEl = byId('vd-state');
    stateEl.dataset.state = st;
    setText(stateEl, valveStateLabel(st));
    setText(byId('vd-confirm'), t('dlg_confirm', { action: action }));
    updateDialogReason();
  }

  function updateDialogReason() {
    const reason = byId('vd-reason');
    setText(byId('vd-count'), t('dlg_count', { n: reason.value.length, max: REASON_MAX }));
    byId('vd-confirm').disabled = reason.value.trim() === '';
  }

  function closeValveDialog(result) {
    const dlg = byId('valve-dialog');
    if (dlg.open) dlg.close(result);
  }

  function onDialogClosed() {
    const dlg = byId('valve-dialog');
    const id = dialog.id;
    const opener = dialog.opener;
    dialog.id = dialog.action = dialog.opener = null;
    byId('vd-reason').value = '';
    if (id === null) return;
    // Back where the user was; after a confirmation that button is disabled, so the
    // card's progress line takes the focus instead.
    const v = deviceViews.get(id);
    if (dlg.returnValue === 'confirm') {
      if (v) v.feedback.focus();
    } else if (opener && opener.isConnected && !opener.disabled) {
      opener.focus();
    } else if (v && v.controls) {
      const btn = v.controls.querySelector('button:not([disabled])');
      if (btn) btn.focus();
    }
  }

  // Keeps Tab inside the dialog (showModal makes the page inert, but Tab would still
  // leave for the browser's own controls).
  function trapFocus(e) {
    const dlg = byId('valve-dialog');
    if (e.isComposing) return; // Esc while composing (pinyin) only ends the composition.
    if (e.key === 'Escape') {
      e.preventDefault();
      closeValveDialog('cancel');
      return;
    }
    if (e.key !== 'Tab') return;
    const items = Array.from(dlg.querySelectorAll('textarea, button')).filter((x) => !x.disabled);
    if (items.length === 0) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (e.shiftKey && (document.activeElement === first || !dlg.contains(document.activeElement))) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && (document.activeElement === last || !dlg.contains(document.activeElement))) {
      e.preventDefault();
      first.focus();
    }
  }

  function setupValveDialog() {
    const dlg = byId('valve-dialog');
    if (!dlg) return;
    const reason = byId('vd-reason');
    reason.maxLength = REASON_MAX;
    reason.addEventListener('input', updateDialogReason);
    byId('vd-cancel').addEventListener('click', () => closeValveDialog('cancel'));
    dlg.addEventListener('keydown', trapFocus);
    dlg.addEventListener('close', onDialogClosed);
    byId('valve-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const text = reason.value.trim();
      if (dialog.id === null || text === '' || !canCommand()) return;
      const id = dialog.id;
      const action = dialog.action;
      // The op exists before the dialog closes, so the focus lands on a visible line.
      sendValveCommand(id, action, text);
      closeValveDialog('confirm');
    });
  }

  function sendValveCommand(id, action, reason) {
    const current = valveOps.get(id);
    if (current && current.phase === 'pending') return;
    const op = { phase: 'pending', action: action, reason: reason, since: Date.now(), record: null, message: null };
    valveOps.set(id, op);
    refreshValve(id);
    const reset = action === 'reset';
    fetch('/api/valves/' + encodeURIComponent(id) + (reset ? '/reset' : '/command'), {
      method: 'POST',
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(reset ? { reason: reason } : { action: action, reason: reason }),
    })
      .then((res) => res.text().then((text) => ({ status: res.status, text: text })))
      .then(
        (reply) => finishCommand(id, op, reply.status, reply.text),
        () => {
          op.phase = 'error';
          op.message = ['err_network'];
          if (valveOps.get(id) === op) refreshValve(id);
        }
      );
  }

  function finishCommand(id, op, status, text) {
    let body = null;
    try {
      body = JSON.parse(text);
    } catch (_) {
      // Not JSON (a proxy's error page, say): the status still says what happened.
    }
    const msg = body && typeof body.error === 'string' ? body.error : String(text || '').slice(0, 200) || 'HTTP ' + status;
    if (status === 200 && op.action === 'reset') {
      // The reset's outcome shows in the valve's own view, which the live stream brings.
      op.phase = 'done';
    } else if (status === 200 && body && typeof body === 'object' && typeof body.result === 'string') {
      op.phase = 'done';
      op.record = body;
    } else {
      op.phase = 'error';
      if (status === 401) op.message = ['err_session'];
      else if (status === 403) op.message = ['err_forbidden'];
      else if (status === 400) op.message = ['err_bad_request', { msg: msg }];
      else if (status === 404) op.message = ['err_not_found', { msg: msg }];
      else if (status === 409) op.message = ['err_conflict', { msg: msg }];
      else op.message = ['err_server', { status: status, msg: msg }];
    }
    if (valveOps.get(id) === op) refreshValve(id);
    // An expired session goes to the login page (after the message had a moment).
    if (status === 401) setTimeout(checkSession, 1500);
  }

  // ---------------------------------------------------------------------------
  // Summary strip.
  // ---------------------------------------------------------------------------
  function updateSummary() {
    renderLostNow();
    const now = Date.now();
    let lost = 0;
    let outOfLimit = 0;
    let warn = 0;
    let valveFault = 0;
    for (const d of state.devices.values()) {
      if (d.kind === 'valve' && valveStateOf(d) === 'fault') valveFault++;
      const st = deviceStatus(d, now);
      if (st.level === 'lost') lost++;
      else if (st.level === 'warn') warn++;
      for (const p of asArray(d.values)) if (p && breachOf(p)) outOfLimit++;
    }
    setText(byId('sum-devices'), state.devices.size);
    setText(byId('sum-lost'), lost);
    setText(byId('sum-wq'), outOfLimit);
    setText(byId('sum-warn'), warn);
    setText(byId('sum-regions'), state.regions.length);
    setText(byId('sum-valve-fault'), valveFault);
    byId('tile-valve-fault').classList.toggle('alarm', valveFault > 0);
    byId('tile-lost').classList.toggle('alarm', lost > 0);
    byId('tile-wq').classList.toggle('alarm', outOfLimit > 0);
    byId('tile-warn').classList.toggle('warn', warn > 0);
  }

  // ---------------------------------------------------------------------------
  // Applying messages.
  // ---------------------------------------------------------------------------
  function renderAll() {
    const now = Date.now();
    const container = byId('regions');
    deviceViews.clear();
    regionViews.clear();
    container.replaceChildren();
    for (const r of state.regions) ensureRegionView(r.id);
    for (const id of state.order) {
      const d = state.devices.get(id);
      if (!d) continue;
      const v = createDeviceView(d);
      deviceViews.set(id, v);
      updateDeviceView(v, d, now);
      const rv = ensureRegionView(regionKeyOf(d));
      rv.cards.append(v.root);
      v.regionKey = rv.id;
    }
    for (const id of regionViews.keys()) updateRegionView(id);
    if (state.regions.length === 0 && state.devices.size === 0) {
      container.append(h('p', { class: 'placeholder', text: state.epoch === null ? t('waiting') : t('no_devices') }));
    }
    updateSummary();
  }

  function validDevice(d) {
    return d && typeof d === 'object' && d.id !== null && d.id !== undefined && String(d.id) !== '';
  }

  function applySnapshot(msg) {
    state.epoch = msg.epoch === null || msg.epoch === undefined ? '' : String(msg.epoch);
    // A snapshot starts the count afresh (a new epoch may restart it lower); the caller
    // records the snapshot's own seq right after this.
    state.seq = null;
    delete document.body.dataset.seq;
    state.regions = asArray(msg.regions)
      .filter((r) => r && r.id !== null && r.id !== undefined)
      .map((r) => ({ id: String(r.id), name: r.name === null || r.name === undefined ? String(r.id) : String(r.name) }));
    state.devices = new Map();
    state.order = [];
    for (const d of asArray(msg.devices)) {
      if (!validDevice(d)) continue;
      const id = String(d.id);
      if (!state.devices.has(id)) state.order.push(id);
      state.devices.set(id, Object.assign({}, d, { id: id }));
    }
    for (const id of Array.from(expanded)) if (!state.devices.has(id)) expanded.delete(id);
    state.resyncing = false;
    renderAll();
    renderEventFilter();
    // Events committed while this page was not connected are in the journal.
    if (!state.searching) loadEvents(false);
  }

  function applyDelta(raw) {
    if (!validDevice(raw)) return;
    if (state.epoch === null) return; // A delta before any snapshot has nothing to apply to.
    const d = Object.assign({}, raw, { id: String(raw.id) });
    const id = d.id;
    const previous = state.devices.get(id);
    if (!previous) state.order.push(id);
    state.devices.set(id, d);

    let v = deviceViews.get(id);
    const kindChanged = v && v.kindClass !== cardKindOf(d);
    if (!v || kindChanged) {
      const fresh = createDeviceView(d);
      if (v) {
        v.root.replaceWith(fresh.root);
        fresh.regionKey = v.regionKey;
      }
      v = fresh;
      deviceViews.set(id, v);
    }
    updateDeviceView(v, d, Date.now());

    const newKey = regionKeyOf(d);
    const oldKey = v.regionKey;
    if (oldKey !== newKey || !v.root.isConnected) {
      // Drop the "no devices" placeholder the first time a device arrives.
      const container = byId('regions');
      for (const p of container.querySelectorAll(':scope > .placeholder')) p.remove();
      ensureRegionView(newKey).cards.append(v.root);
      v.regionKey = newKey;
    }
    updateRegionView(newKey);
    if (oldKey && oldKey !== newKey) updateRegionView(oldKey);
    updateSummary();
    if (dialog.id === id) renderValveDialog();
  }

  const EVENT_KINDS = [
    'comm_lost',
    'comm_restored',
    'meter_comm_lost',
    'meter_comm_restored',
    'path_switched',
    'limit_crossed',
    'limit_cleared',
    'valve_fault',
    'valve_fault_cleared',
    'valve_moved',
    'actor_restart',
  ];

  // The event's text in the chosen language, from its kind and params; the server's English message when the
  // page knows no template for it.
  function eventMessage(ev) {
    const p = ev.params && typeof ev.params === 'object' ? ev.params : null;
    if (!p) return ev.message ? String(ev.message) : '';
    const vars = Object.assign({}, p);
    if (vars.parameter) vars.parameter = paramLabel(vars.parameter);
    // Values come from f32 registers: 0.10000000149011612 reads as 0.1.
    for (const k of ['value', 'limit']) {
      const n = Number(vars[k]);
      if (vars[k] !== undefined && Number.isFinite(n)) vars[k] = String(Number(n.toPrecision(6)));
    }
    let key = null;
    switch (String(ev.kind || '')) {
      case 'comm_lost': key = 'evm_comm_lost'; break;
      case 'comm_restored': key = 'evm_comm_restored'; break;
      case 'meter_comm_lost': key = 'evm_meter_comm_lost'; break;
      case 'meter_comm_restored': key = 'evm_meter_comm_restored'; break;
      case 'path_switched': key = p.reason === 'primary_recovered' ? 'evm_path_primary' : 'evm_path_failover'; break;
      case 'actor_restart': key = 'evm_actor_restart'; break;
      case 'limit_crossed': key = p.side === 'high' ? 'evm_limit_high' : 'evm_limit_low'; break;
      case 'limit_cleared': key = 'evm_limit_cleared'; break;
      case 'valve_fault':
        // The fault's reason with its code (issue 7 §7); an event stored before codes shows the English text.
        return codedText(p.error_code, p.error_params, p.reason || ev.message || '');
      case 'valve_moved':
        key = p.uncommanded === 'true' ? 'evm_valve_uncommanded' : 'evm_valve_commanded';
        vars.from = valveStateLabel(String(p.from || 'unknown'));
        vars.to = valveStateLabel(String(p.to || 'unknown'));
        break;
      case 'valve_fault_cleared': {
        // `how` comes as JSON: {"how":"read_back","state":…} or {"how":"reset","by":…,"reason":…}.
        let how = null;
        try {
          how = JSON.parse(String(p.how || ''));
        } catch (_) {
          how = null;
        }
        if (how && how.how === 'reset') {
          key = 'evm_valve_reset';
          vars.by = String(how.by || '');
          vars.reason = String(how.reason || '');
        } else if (how && how.how === 'read_back') {
          key = 'evm_valve_read_back';
          vars.state = valveStateLabel(String(how.state || 'unknown'));
        }
        break;
      }
    }
    if (!key) return ev.message ? String(ev.message) : '';
    let text = t(key, vars);
    // The device's last error, in the page's language when it came with a code (issue 7 §7).
    if (p.error) text = t('evm_with_error', { text: text, error: codedText(p.error_code, p.error_params, String(p.error)) });
    return text;
  }

  function eventView(ev) {
    const kind = String(ev.kind || '');
    const labelKey = EVENT_KINDS.includes(kind) ? 'ev_' + kind : null;
    const label = labelKey ? t(labelKey) : kind;
    const devId = ev.device === null || ev.device === undefined ? '' : String(ev.device);
    const dev = state.devices.get(devId);
    const devName = dev && dev.name ? dev.name : devId;
    const regId = ev.region === null || ev.region === undefined ? '' : String(ev.region);
    const reg = state.regions.find((r) => r.id === regId);
    const regText = reg ? reg.name : regId;
    const ts = toNumber(ev.ts);
    const time = h('time', { class: 'ev-time ts', datetime: ts === null ? null : new Date(ts).toISOString(), text: fmtTime(ts) });
    const age = h('span', { class: 'age', 'data-ts': ts, text: fmtAge(ts, Date.now()) });
    return h('li', { class: 'event ev-' + kind.replace(/[^a-z0-9_-]/gi, '_'), 'data-kind': kind }, [
      h('div', { class: 'ev-line' }, [time, ' ', age]),
      h('div', { class: 'ev-line' }, [
        h('span', { class: 'ev-kind', text: label }),
        ' ',
        h('span', { class: 'ev-device', text: devName }),
        regText ? h('span', { class: 'ev-region', text: regText }) : null,
      ]),
      eventMessage(ev) ? h('div', { class: 'ev-message', text: eventMessage(ev) }) : null,
    ]);
  }

  // Live events and the journal's history are merged by id (the change-feed sequence number), newest first.
  function mergeEvents(list) {
    const seen = new Set(state.events.map((e) => e.id));
    for (const ev of asArray(list)) {
      if (ev && typeof ev === 'object' && !seen.has(ev.id)) {
        state.events.push(ev);
        seen.add(ev.id);
      }
    }
    state.events.sort((a, b) => (toNumber(b.id) || 0) - (toNumber(a.id) || 0));
    if (state.events.length > MAX_EVENTS) state.events.length = MAX_EVENTS;
  }

  function eventQuery(form) {
    const q = new URLSearchParams();
    q.set('limit', String(MAX_EVENTS));
    if (!form) return q;
    const region = byId('evf-region').value;
    const kind = byId('evf-kind').value;
    const device = byId('evf-device').value.trim();
    if (region) q.set('region', region);
    if (kind) q.set('kind', kind);
    if (device) q.set('device', device);
    for (const [name, id] of [['from', 'evf-from'], ['to', 'evf-to']]) {
      const v = byId(id).value;
      const ms = v ? new Date(v).getTime() : NaN;
      if (Number.isFinite(ms)) q.set(name, String(ms));
    }
    return q;
  }

  // Past events from the journal: on load (so a reload or a second operator sees what happened), and for a
  // search with the filter form (the live list pauses while search results are shown).
  function loadEvents(search) {
    return fetch('/api/events?' + eventQuery(search).toString(), {
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json' },
    })
      .then((res) => (res.ok ? res.json() : res.json().then((b) => Promise.reject(new Error(b && b.error ? b.error : res.status)))))
      .then((list) => {
        if (search) {
          state.searching = true;
          state.events = [];
        }
        mergeEvents(list);
        renderEvents();
      })
      .catch((e) => {
        const mode = byId('events-mode');
        mode.hidden = false;
        setText(mode, t('evf_failed', { why: e && e.message ? e.message : '?' }));
      });
  }

  function renderEventFilter() {
    const region = byId('evf-region');
    const keep = region.value;
    region.replaceChildren(h('option', { value: '', text: t('evf_all') }), ...state.regions.map((r) => h('option', { value: r.id, text: r.name })));
    region.value = keep;
    const kind = byId('evf-kind');
    const keepKind = kind.value;
    kind.replaceChildren(h('option', { value: '', text: t('evf_all') }), ...EVENT_KINDS.map((k) => h('option', { value: k, text: t('ev_' + k) })));
    kind.value = keepKind;
  }

  // The devices that are comm-lost right now, from the live views (true for a client that just connected).
  function renderLostNow() {
    const el = byId('lost-now');
    if (!el) return;
    const names = state.order
      .map((id) => state.devices.get(id))
      .filter((d) => d && d.comm && d.comm.comm_lost)
      .map((d) => d.name || d.id);
    el.hidden = names.length === 0;
    setText(el, names.length ? t('lost_now', { list: names.join(', ') }) : '');
  }

  function addEvent(ev) {
    if (!ev || typeof ev !== 'object') return;
    if (state.searching) return;
    if (state.events.some((e) => e.id !== undefined && e.id === ev.id)) return;
    state.events.unshift(ev);
    if (state.events.length > MAX_EVENTS) state.events.length = MAX_EVENTS;
    const list = byId('events');
    list.prepend(eventView(ev));
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
    byId('events-empty').hidden = true;
  }

  function renderEvents() {
    const mode = byId('events-mode');
    mode.hidden = !state.searching;
    if (state.searching) setText(mode, t('evf_history', { n: state.events.length }));
    const list = byId('events');
    list.setAttribute('aria-busy', 'true');
    list.replaceChildren(...state.events.map(eventView));
    list.removeAttribute('aria-busy');
    byId('events-empty').hidden = state.events.length > 0;
  }

  function handleMessage(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (_) {
      console.warn('waterworks: ignoring a frame that is not JSON');
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    const seq = typeof msg.seq === 'number' && Number.isFinite(msg.seq) ? msg.seq : null;
    const wasStalled = stalled();
    state.lastFrameAt = Date.now();
    if (wasStalled) renderConn();
    switch (msg.type) {
      case 'heartbeat':
        if (typeof msg.every_ms === 'number' && msg.every_ms > 0) state.heartbeatMs = msg.every_ms;
        return;
      case 'snapshot':
        applySnapshot(msg);
        break;
      case 'delta':
        // A replayed message we already hold is skipped; a delta carries the whole device,
        // so a gap needs no repair.
        if (seq !== null && state.seq !== null && seq <= state.seq) return;
        applyDelta(msg.device);
        break;
      case 'event':
        if (seq !== null && state.seq !== null && seq <= state.seq) return;
        addEvent(msg.event);
        break;
      case 'resync':
        // The server dropped messages for us; a snapshot follows on this socket.
        state.resyncing = true;
        renderConn();
        return;
      default:
        return;
    }
    if (seq !== null) {
      state.seq = seq;
      document.body.dataset.seq = String(seq);
    }
    state.lastUpdate = Date.now();
    renderLastUpdate();
    if (msg.type === 'snapshot') renderConn();
  }

  // ---------------------------------------------------------------------------
  // Connection: one socket, capped exponential backoff, resume from epoch + seq.
  // ---------------------------------------------------------------------------
  const conn = { ws: null, attempt: 0, timer: null, leaving: false };

  function wsUrl() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let url = proto + '//' + location.host + '/ws';
    const q = [];
    if (state.epoch !== null && state.seq !== null) {
      q.push('since=' + encodeURIComponent(state.seq), 'epoch=' + encodeURIComponent(state.epoch));
    }
    // Large frames (the snapshot) come zlib-compressed where the browser can inflate them (issue 9 §4).
    if (typeof DecompressionStream === 'function') q.push('z=1');
    if (q.length) url += '?' + q.join('&');
    return url;
  }

  function inflate(blob) {
    return new Response(blob.stream().pipeThrough(new DecompressionStream('deflate'))).text();
  }

  function connect() {
    conn.timer = null;
    if (conn.leaving) return;
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (_) {
      scheduleReconnect();
      return;
    }
    conn.ws = ws;
    let openedAt = null;
    let gotMessage = false;
    ws.onopen = () => {
      openedAt = Date.now();
      state.lastFrameAt = openedAt;
      state.connState = 'live';
      renderConn();
    };
    // Binary frames are compressed JSON, inflated off the main thread's hot path; frames are handled in
    // order, so a delta that arrives while the snapshot inflates waits for it.
    let inflating = 0;
    let chain = Promise.resolve();
    ws.onmessage = (ev) => {
      gotMessage = true;
      const data = ev.data;
      if (typeof data === 'string' && inflating === 0) {
        handleMessage(data);
        return;
      }
      inflating += 1;
      chain = chain
        .then(() => (typeof data === 'string' ? data : inflate(data)))
        .then(
          (text) => {
            if (conn.ws === ws) handleMessage(text);
          },
          () => ws.close(), // a frame that does not inflate: reconnect for a fresh snapshot
        )
        .finally(() => {
          inflating -= 1;
        });
    };
    ws.onerror = () => {
      // A close event always follows; it does the work.
    };
    ws.onclose = () => {
      if (conn.ws !== ws) return;
      conn.ws = null;
      if (conn.leaving) return;
      if (openedAt !== null && (gotMessage || Date.now() - openedAt >= STABLE_CONN_MS)) conn.attempt = 0;
      state.connState = 'reconnecting';
      state.resyncing = false;
      renderConn();
      // The handshake cannot tell us why it failed; /api/me can. An expired session
      // goes to the login page instead of retrying forever.
      checkSession().then((ok) => {
        if (ok !== false) scheduleReconnect();
      });
    };
  }

  function scheduleReconnect() {
    if (conn.leaving || conn.timer !== null) return;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, conn.attempt));
    // A little jitter so that a wall of screens does not reconnect in lockstep.
    const delay = Math.min(BACKOFF_MAX_MS, Math.round(base * (0.8 + Math.random() * 0.4)));
    conn.attempt = Math.min(conn.attempt + 1, 10);
    conn.timer = setTimeout(connect, delay);
  }

  // Resolves true when logged in, false when not (and leaves for /login), null when unknown.
  function checkSession() {
    return fetch('/api/me', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } })
      .then((res) => {
        if (res.status === 401) {
          goToLogin();
          return false;
        }
        return res.ok ? res.json().then(showUser, () => true).then(() => true) : null;
      })
      .catch(() => null);
  }

  function goToLogin() {
    conn.leaving = true;
    if (conn.timer !== null) clearTimeout(conn.timer);
    location.href = '/login';
  }

  function renderConn() {
    const el = byId('conn');
    const s = state.connState;
    const stall = stalled();
    el.dataset.state = stall ? 'stalled' : s === 'live' ? 'live' : 'reconnecting';
    el.classList.toggle('resync', s === 'live' && state.resyncing);
    const key = stall ? 'conn_stalled' : s === 'live' ? (state.resyncing ? 'conn_resync' : 'conn_live') : s === 'connecting' ? 'conn_connecting' : 'conn_reconnecting';
    const text = el.querySelector('.conn-text');
    text.dataset.i18n = key;
    setText(text, t(key));
  }

  function renderLastUpdate() {
    const now = Date.now();
    const n = state.lastUpdate;
    const time = byId('last-update');
    setText(time, fmtTime(n));
    setAttr(time, 'datetime', n === null ? null : new Date(n).toISOString());
    const age = byId('last-update-age');
    setAttr(age, 'data-ts', n);
    setText(age, n === null ? '' : fmtAge(n, now));
  }

  // ---------------------------------------------------------------------------
  // Clock-driven refresh: relative ages and staleness change without any message.
  // ---------------------------------------------------------------------------
  function refreshAges(nodes, now) {
    for (const e of nodes) {
      const ts = e.getAttribute('data-ts');
      setText(e, ts === null ? '' : fmtAge(Number(ts), now));
    }
  }

  let tick = 0;
  function onTick() {
    const now = Date.now();
    renderConn();
    // Meter ages only where a table is open: closed tables may hold thousands of rows.
    refreshAges(document.querySelectorAll('.age:not(.m-age)'), now);
    for (const id of expanded) {
      const v = deviceViews.get(id);
      if (v && v.meters) refreshAges(v.meters.querySelectorAll('.m-age'), now);
    }
    // Elapsed time of commands in flight.
    for (const [id, op] of valveOps) if (op.phase === 'pending') refreshValve(id);
    tick++;
    if (tick % 5 === 0) {
      // Staleness depends on the clock: re-judge status lights every 5 s.
      let changed = false;
      for (const [id, v] of deviceViews) {
        const d = state.devices.get(id);
        if (!d) continue;
        const st = deviceStatus(d, now);
        if (st.level !== v.statusLevel || st.level === 'warn') {
          applyStatus(v, st);
          v.root.classList.toggle('warn', st.level === 'warn');
          changed = true;
        }
      }
      if (changed) updateSummary();
    }
  }

  // ---------------------------------------------------------------------------
  // Header: user, language, logout.
  // ---------------------------------------------------------------------------
  function showUser(me) {
    if (!me || typeof me !== 'object') return;
    state.user = { username: String(me.username || ''), role: String(me.role || '') };
    renderUser();
    // The role decides whether valve cards have buttons.
    refreshAllValves();
  }

  function renderUser() {
    if (!state.user) return;
    setText(byId('user-name'), state.user.username || '—');
    setText(byId('user-role'), state.user.role ? roleLabel(state.user.role) : '');
    // User management is for admins (issue 8 §2); the server refuses the page to others anyway.
    const adminLink = byId('admin-link');
    if (adminLink) adminLink.hidden = state.user.role !== 'admin';
    // The audit journal is for admins (the server refuses everyone else too).
    byId('audit-link').hidden = state.user.role !== 'admin';
    // Alarm settings are edited by admins (issue 9 §5).
    const settingsLink = byId('alarm-settings-link');
    if (settingsLink) settingsLink.hidden = state.user.role !== 'admin';
  }

  function applyStaticLabels() {
    document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
    document.title = t('title');
    for (const e of document.querySelectorAll('[data-i18n]')) setText(e, t(e.dataset.i18n));
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
    renderConn();
    renderLastUpdate();
    renderUser();
    renderAll();
    renderEventFilter();
    renderEvents();
    renderValveDialog();
  }

  function logout() {
    conn.leaving = true;
    if (conn.timer !== null) clearTimeout(conn.timer);
    if (conn.ws) {
      const ws = conn.ws;
      conn.ws = null;
      ws.close(1000);
    }
    const go = () => {
      location.href = '/login';
    };
    fetch('/api/logout', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: '{}',
    }).then(go, go);
  }

  function start() {
    applyStaticLabels();
    renderConn();
    renderLastUpdate();
    for (const b of document.querySelectorAll('.lang-switch button')) {
      b.addEventListener('click', () => setLang(b.dataset.lang));
    }
    byId('logout').addEventListener('click', logout);
    setupValveDialog();
    // Back online after a network outage: no need to wait out the backoff.
    window.addEventListener('online', () => {
      if (conn.timer !== null && !conn.ws) {
        clearTimeout(conn.timer);
        conn.timer = null;
        connect();
      }
    });
    setInterval(onTick, 1000);
    byId('ev-filter').addEventListener('submit', (e) => {
      e.preventDefault();
      loadEvents(true);
    });
    byId('evf-live').addEventListener('click', () => {
      state.searching = false;
      state.events = [];
      renderEvents();
      loadEvents(false);
    });
    renderEventFilter();
    loadEvents(false);

    fetch('/api/me', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } })
      .then((res) => {
        if (res.status === 401) {
          goToLogin();
          return;
        }
        if (res.ok) return res.json().then(showUser, () => undefined).then(connect);
        connect();
      })
      .catch(() => connect());
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
