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
      totp_title: '双因素认证（验证码）', totp_on: '已启用：登录时需要输入验证码。丢失手机时请联系管理员移除。',
      totp_off: '未启用。启用后，登录时除密码外还需要身份验证器应用中的验证码。', totp_enrol: '启用双因素认证',
      totp_scan: '在身份验证器应用中添加以下密钥（只显示这一次），然后输入应用显示的6位验证码。',
      totp_secret: '密钥', totp_code: '验证码', totp_confirm: '确认', totp_pending: '待确认：输入应用中的验证码后才会启用。',
      totp_invalid: '验证码错误，请输入应用中当前显示的验证码', totp_not_for_role: '双因素认证只适用于管理员和调度员',
      totp_enrolled: '双因素认证已启用；如需重新设置，请管理员先移除',
    },
    en: {
      page_title: 'My account',
      forced: 'Your password was set by someone else: change it before you go on.',
      change_password: 'Change password', old_password: 'Current password', new_password: 'New password',
      new_password2: 'New password again',
      policy: 'At least 10 characters; not containing the user name; not a common password, nor one or two characters repeated.',
      changed: 'Password changed. Every other session of yours has ended.', my_sessions: 'My sessions', saving: 'Saving…',
      totp_title: 'Two-factor sign-in (codes)', totp_on: 'On: sign-in asks for a code. If you lose the phone, ask an admin to remove it.',
      totp_off: 'Off. When on, sign-in asks for a code from an authenticator app besides the password.',
      totp_enrol: 'Turn on two-factor sign-in',
      totp_scan: 'Add this key to your authenticator app (it is shown only now), then enter the 6-digit code it shows.',
      totp_secret: 'Key', totp_code: 'Code', totp_confirm: 'Confirm', totp_pending: 'Waiting: it is on once you enter a code from the app.',
      totp_invalid: 'Wrong code; enter the one the app shows now', totp_not_for_role: 'Two-factor sign-in is for admins and operators',
      totp_enrolled: 'Two-factor sign-in is on already; an admin removes it first to set it up again',
    },
  };
  let me = null;
  let error = null; // the last failure, kept to re-render in another language
  let done = false;
  let sessions = [];
  let sessionsError = null;
  let enrolment = null; // {secret, uri} while an enrolment waits for its code
  let totpError = null;

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
    const canTotp = !!me && !forced && (me.role === 'admin' || me.role === 'operator');
    $('totp-section').hidden = !canTotp;
    const state = me && me.totp ? 'on' : enrolment ? 'pending' : 'off';
    $('totp-state').dataset.state = state;
    $('totp-state').textContent = t(state === 'on' ? 'totp_on' : state === 'pending' ? 'totp_pending' : 'totp_off');
    $('totp-enrol').hidden = state !== 'off';
    $('totp-pending').hidden = state !== 'pending';
    $('totp-secret').textContent = enrolment ? enrolment.secret : '';
    $('totp-uri').textContent = enrolment ? enrolment.uri : '';
    $('totp-error').textContent = totpError ? WW.errorText(totpError) : '';
    $('totp-error').dataset.code = totpError && totpError.body && totpError.body.code ? totpError.body.code : '';
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
    $('totp-enrol').addEventListener('click', () => {
      totpError = null;
      WW.api('POST', '/api/me/totp').then((e) => { enrolment = e; }, (e) => { totpError = e; }).then(renderPage);
    });
    $('totp-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      totpError = null;
      WW.api('POST', '/api/me/totp/confirm', { code: $('totp-code').value.trim() }).then(() => {
        enrolment = null;
        me.totp = true;
      }, (e) => { totpError = e; }).then(renderPage);
    });
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
