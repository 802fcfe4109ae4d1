/*
 * My account (/account; issue 8 §2). Changing the password sends the old and the new one to
 * POST /api/me/password; the server then ends every session of the user and sets a fresh one in the cookie.
 * While the password must be changed (`must_change_password`), nothing else is shown and, once changed, the
 * page goes on to the HMI. Hooks for tests: body[data-forced], #password-error[data-code], #password-done.
 */
'use strict';
(function () {
  const TEXT = {
    zh: {
      page_title: '我的账户',
      forced: '您的密码是由他人设置的，继续使用前请先修改密码。',
      change_password: '修改密码', old_password: '当前密码', new_password: '新密码', new_password2: '再次输入新密码',
      policy: '至少10个字符；不能包含用户名；不能是常见密码，也不能只由一两个字符重复组成。',
      changed: '密码已修改。其他设备上的会话均已结束。', my_sessions: '我的会话', saving: '正在保存…',
    },
    en: {
      page_title: 'My account',
      forced: 'Your password was set by someone else: change it before you go on.',
      change_password: 'Change password', old_password: 'Current password', new_password: 'New password',
      new_password2: 'New password again',
      policy: 'At least 10 characters; not containing the user name; not a common password, nor one or two characters repeated.',
      changed: 'Password changed. Every other session of yours has ended.', my_sessions: 'My sessions', saving: 'Saving…',
    },
  };
  let me = null;
  let error = null; // the last failure, kept to re-render in another language
  let done = false;
  let sessions = [];
  let sessionsError = null;

  function $(id) { return document.getElementById(id); }

  function renderPage() {
    const t = WW.t;
    document.title = t('page_title') + ' · Waterworks';
    if (me) $('who').textContent = me.username + ' · ' + t('role_' + me.role);
    const forced = !!(me && me.must_change_password);
    document.body.dataset.forced = forced ? 'true' : 'false';
    $('forced').hidden = !forced;
    $('back').hidden = forced;
    $('admin-link').hidden = forced || !me || me.role !== 'admin';
    $('sessions-section').hidden = forced || !me;
    const errEl = $('password-error');
    errEl.textContent = error ? WW.errorText(error) : '';
    errEl.dataset.code = error && error.body && error.body.code ? error.body.code : (error && error.local) || '';
    $('password-done').textContent = done ? t('changed') : '';
    renderSessions();
  }

  function renderSessions() {
    const body = $('sessions');
    body.textContent = '';
    for (const s of sessions) {
      const tr = WW.el('tr', { 'data-session': s.id });
      tr.appendChild(WW.el('td', { 'data-label': WW.t('created') }, WW.time(s.created)));
      tr.appendChild(WW.el('td', { 'data-label': WW.t('last_seen') }, WW.time(s.last_seen)));
      tr.appendChild(WW.el('td', { 'data-label': WW.t('client') }, s.client || '—'));
      const td = WW.el('td', { class: 'actions' });
      if (s.current) {
        td.appendChild(WW.el('span', { class: 'tag' }, WW.t('current')));
      } else {
        const b = WW.el('button', { type: 'button', 'data-action': 'revoke' }, WW.t('revoke'));
        b.addEventListener('click', () => {
          WW.api('DELETE', '/api/sessions/' + encodeURIComponent(s.id)).then(loadSessions, (e) => { sessionsError = e; renderPage(); });
        });
        td.appendChild(b);
      }
      tr.appendChild(td);
      body.appendChild(tr);
    }
    $('sessions-error').textContent = sessionsError ? WW.errorText(sessionsError) : '';
  }

  function loadSessions() {
    if (!me || me.must_change_password) return;
    WW.api('GET', '/api/sessions').then((list) => {
      sessions = (list || []).filter((s) => s.username === me.username);
      sessionsError = null;
      renderPage();
    }, (e) => { sessionsError = e; renderPage(); });
  }

  document.addEventListener('DOMContentLoaded', () => {
    WW.page(TEXT, renderPage);
    WW.api('GET', '/api/me').then((u) => { me = u; renderPage(); loadSessions(); }, (e) => { error = e; renderPage(); });
    const form = $('password-form');
    const submit = $('change-submit');
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const old = $('old-password').value;
      const next = $('new-password').value;
      done = false;
      if (next !== $('new-password2').value) {
        error = { local: 'password_mismatch', body: { code: 'password_mismatch' } };
        renderPage();
        return;
      }
      error = null;
      submit.disabled = true;
      submit.textContent = WW.t('saving');
      const wasForced = !!(me && me.must_change_password);
      WW.api('POST', '/api/me/password', { old_password: old, new_password: next }).then((r) => {
        me = r.user;
        done = true;
        form.reset();
        if (wasForced) {
          location.href = '/';
          return;
        }
        loadSessions();
      }, (e) => { error = e; }).then(() => {
        submit.disabled = false;
        submit.textContent = WW.t('change_password');
        renderPage();
      });
    });
  });
})();
