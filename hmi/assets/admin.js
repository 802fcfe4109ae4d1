/*
 * User management (/admin; issue 8 §2). Reads GET /api/users and GET /api/sessions and acts through
 * POST /api/users/{name}/role|disable|enable|password, DELETE /api/users/{name}, POST /api/users and
 * DELETE /api/sessions/{id}. The server decides and audits; this page shows its answer (errors by code, in the
 * page's language). Delete asks for a second click. Hooks for tests: tr[data-user][data-disabled],
 * button[data-action], #error[data-code], #status, tr[data-session].
 */
'use strict';
(function () {
  const ROLES = ['admin', 'operator', 'manager', 'crew', 'billing'];
  const TEXT = {
    zh: {
      page_title: '用户管理', users: '用户', sessions: '会话', add_user: '添加用户', username: '用户名',
      initial_password: '初始密码', add: '添加', enabled: '启用', disabled: '已禁用', must_change: '须改密码',
      totp: '双因素', disable: '禁用', enable: '启用', reset: '重置密码', delete: '删除', confirm_delete: '确认删除？',
      new_password: '新密码', reset_hint: '用户下次登录时必须修改此密码；其所有会话将立即结束。', cancel: '取消',
      reset_for: '重置 {user} 的密码',
      done_role: '已将 {user} 的角色改为 {role}，其会话已结束', done_disable: '已禁用 {user}，其会话已结束',
      done_enable: '已启用 {user}', done_delete: '已删除 {user}（审计记录保留）', done_reset: '已重置 {user} 的密码',
      done_create: '已添加 {user}', done_revoke: '会话已结束', totp_remove: '移除双因素',
      done_totp_remove: '已移除 {user} 的双因素认证',
    },
    en: {
      page_title: 'Users', users: 'Users', sessions: 'Sessions', add_user: 'Add a user', username: 'User name',
      initial_password: 'Initial password', add: 'Add', enabled: 'enabled', disabled: 'disabled',
      must_change: 'must change password', totp: '2FA', disable: 'Disable', enable: 'Enable', reset: 'Reset password',
      delete: 'Delete', confirm_delete: 'Really delete?', new_password: 'New password',
      reset_hint: 'The user must change it at the next sign-in; every session of theirs ends now.', cancel: 'Cancel',
      reset_for: 'Reset the password of {user}',
      done_role: '{user} is now {role}; their sessions ended', done_disable: '{user} is disabled; their sessions ended',
      done_enable: '{user} is enabled', done_delete: '{user} is deleted (the audit trail is kept)',
      done_reset: 'The password of {user} is reset', done_create: '{user} is added', done_revoke: 'The session ended',
      totp_remove: 'Remove 2FA', done_totp_remove: 'Two-factor sign-in of {user} is removed',
    },
  };
  let me = null;
  let users = [];
  let sessions = [];
  let error = null;
  let status = null; // {key, vars}
  let armedDelete = null; // the user whose delete button was clicked once
  let resetting = null;

  function $(id) { return document.getElementById(id); }
  const t = (k, v) => WW.t(k, v);
  const roleName = (r) => t('role_' + r);

  function act(promise, done) {
    error = null;
    status = null;
    renderPage();
    return promise.then(() => { status = done; }, (e) => { error = e; }).then(load);
  }

  function button(label, action, onClick, cls) {
    const b = WW.el('button', { type: 'button', 'data-action': action }, label);
    if (cls) b.className = cls;
    b.addEventListener('click', onClick);
    return b;
  }

  function userRow(u) {
    const tr = WW.el('tr', { 'data-user': u.username, 'data-disabled': u.disabled ? 'true' : 'false', 'data-role': u.role });
    tr.appendChild(WW.el('td', { 'data-label': t('user') }, u.username));
    const roleTd = WW.el('td', { 'data-label': t('role') });
    const select = WW.el('select', { 'data-action': 'role', 'aria-label': t('role') + ' ' + u.username });
    for (const r of ROLES) {
      const o = WW.el('option', { value: r }, roleName(r));
      if (r === u.role) o.selected = true;
      select.appendChild(o);
    }
    select.addEventListener('change', () => {
      const role = select.value;
      act(WW.api('POST', '/api/users/' + encodeURIComponent(u.username) + '/role', { role: role }),
        { key: 'done_role', vars: { user: u.username, role: roleName(role) } });
    });
    roleTd.appendChild(select);
    tr.appendChild(roleTd);
    const st = WW.el('td', { 'data-label': t('status') });
    st.appendChild(WW.el('span', { class: u.disabled ? 'tag off' : 'tag' }, t(u.disabled ? 'disabled' : 'enabled')));
    if (u.must_change_password) st.appendChild(WW.el('span', { class: 'tag warn' }, t('must_change')));
    if (u.totp) st.appendChild(WW.el('span', { class: 'tag' }, t('totp')));
    tr.appendChild(st);
    const actions = WW.el('td', { class: 'actions', 'data-label': t('actions') });
    const path = '/api/users/' + encodeURIComponent(u.username);
    if (u.disabled) {
      actions.appendChild(button(t('enable'), 'enable', () => act(WW.api('POST', path + '/enable'), { key: 'done_enable', vars: { user: u.username } })));
    } else {
      actions.appendChild(button(t('disable'), 'disable', () => act(WW.api('POST', path + '/disable'), { key: 'done_disable', vars: { user: u.username } })));
    }
    actions.appendChild(button(t('reset'), 'reset', () => openReset(u.username)));
    if (u.totp) {
      actions.appendChild(button(t('totp_remove'), 'totp-remove', () => act(WW.api('DELETE', path + '/totp'), { key: 'done_totp_remove', vars: { user: u.username } })));
    }
    const armed = armedDelete === u.username;
    actions.appendChild(button(t(armed ? 'confirm_delete' : 'delete'), 'delete', () => {
      if (armedDelete !== u.username) {
        armedDelete = u.username;
        renderPage();
        return;
      }
      armedDelete = null;
      act(WW.api('DELETE', path), { key: 'done_delete', vars: { user: u.username } });
    }, 'danger'));
    tr.appendChild(actions);
    return tr;
  }

  function sessionRow(s) {
    const tr = WW.el('tr', { 'data-session': s.id, 'data-user': s.username });
    tr.appendChild(WW.el('td', { 'data-label': t('user') }, s.username));
    tr.appendChild(WW.el('td', { 'data-label': t('client') }, s.client || '—'));
    tr.appendChild(WW.el('td', { 'data-label': t('created') }, WW.time(s.created)));
    tr.appendChild(WW.el('td', { 'data-label': t('last_seen') }, WW.time(s.last_seen)));
    const actions = WW.el('td', { class: 'actions' });
    if (s.current) actions.appendChild(WW.el('span', { class: 'tag' }, t('current')));
    else actions.appendChild(button(t('revoke'), 'revoke', () => act(WW.api('DELETE', '/api/sessions/' + encodeURIComponent(s.id)), { key: 'done_revoke' })));
    tr.appendChild(actions);
    return tr;
  }

  function renderPage() {
    document.title = t('page_title') + ' · Waterworks';
    if (me) $('who').textContent = me.username + ' · ' + roleName(me.role);
    const ub = $('users');
    ub.textContent = '';
    for (const u of users) ub.appendChild(userRow(u));
    const sb = $('sessions');
    sb.textContent = '';
    for (const s of sessions) sb.appendChild(sessionRow(s));
    const roleSelect = $('new-role');
    const chosen = roleSelect.value || 'operator';
    roleSelect.textContent = '';
    for (const r of ROLES) {
      const o = WW.el('option', { value: r }, roleName(r));
      if (r === chosen) o.selected = true;
      roleSelect.appendChild(o);
    }
    const errEl = $('error');
    errEl.textContent = error ? WW.errorText(error) : '';
    errEl.dataset.code = error && error.body && error.body.code ? error.body.code : '';
    $('status').textContent = status ? t(status.key, status.vars) : '';
    if (resetting) $('reset-title').textContent = t('reset_for', { user: resetting });
  }

  function load() {
    return Promise.all([WW.api('GET', '/api/users'), WW.api('GET', '/api/sessions')]).then(([u, s]) => {
      users = u || [];
      sessions = s || [];
      document.body.dataset.loaded = String(Date.now());
    }, (e) => { error = e; }).then(renderPage);
  }

  function openReset(name) {
    resetting = name;
    $('reset-password').value = '';
    renderPage();
    $('reset-dialog').showModal();
  }

  document.addEventListener('DOMContentLoaded', () => {
    WW.page(TEXT, renderPage);
    WW.api('GET', '/api/me').then((u) => { me = u; }, (e) => { error = e; }).then(load);
    $('create-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const name = $('new-username').value.trim();
      const body = { username: name, password: $('new-user-password').value, role: $('new-role').value };
      act(WW.api('POST', '/api/users', body).then(() => { $('create-form').reset(); }),
        { key: 'done_create', vars: { user: name } });
    });
    $('reset-cancel').addEventListener('click', () => { resetting = null; $('reset-dialog').close(); });
    $('reset-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const name = resetting;
      $('reset-dialog').close();
      resetting = null;
      act(WW.api('POST', '/api/users/' + encodeURIComponent(name) + '/password', { password: $('reset-password').value }),
        { key: 'done_reset', vars: { user: name } });
    });
  });
})();
