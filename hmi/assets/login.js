// The login page's script (public: served without a session). A file, not inline: the CSP allows only
// scripts from this server's files (issue 8 §5).
'use strict';
(function () {
  const I18N = {
    zh: {
      page_title: '登录 · 智慧水务监控',
      title: '智慧水务监控',
      language: '语言',
      username: '用户名',
      password: '密码',
      sign_in: '登录',
      signing_in: '正在登录…',
      missing: '请输入用户名和密码',
      invalid_credentials: '用户名或密码错误',
      throttled: '尝试次数过多，请稍后再试',
      busy: '服务器正忙于处理其他登录，请几秒后再试',
      network: '无法连接服务器，请检查网络后重试',
      failed: '登录失败（HTTP {status}）',
      totp: '验证码（身份验证器应用）',
      totp_required: '请输入身份验证器应用中的6位验证码',
      totp_invalid: '验证码错误或已使用，请输入新的验证码',
    },
    en: {
      page_title: 'Sign in · Waterworks SCADA',
      title: 'Waterworks SCADA',
      language: 'Language',
      username: 'Username',
      password: 'Password',
      sign_in: 'Sign in',
      signing_in: 'Signing in…',
      missing: 'Enter a username and a password',
      invalid_credentials: 'Wrong username or password',
      throttled: 'Too many attempts, please try again later',
      busy: 'The server is busy with other sign-ins; try again in a few seconds',
      network: 'Cannot reach the server; check the network and try again',
      failed: 'Sign-in failed (HTTP {status})',
      totp: 'Code (authenticator app)',
      totp_required: 'Enter the 6-digit code of your authenticator app',
      totp_invalid: 'The code is wrong or was used already; enter a new one',
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

  // The error shown last, kept as a key or raw text so that a language switch can redo it.
  let shown = null; // {key, vars} | {raw} | null
  let busy = false;

  const $ = (id) => document.getElementById(id);
  const form = $('login-form');
  const user = $('username');
  const pass = $('password');
  const submit = $('submit');
  const errorEl = $('error');
  const totpRow = $('totp-row');
  const totpInput = $('totp');

  function t(key, vars) {
    let s = I18N[lang][key] || I18N.en[key] || key;
    if (vars) s = s.replace(/\{(\w+)\}/g, (m, n) => (n in vars ? String(vars[n]) : m));
    return s;
  }

  function render() {
    document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
    document.title = t('page_title');
    for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
    for (const e of document.querySelectorAll('[data-i18n-label]')) e.setAttribute('aria-label', t(e.dataset.i18nLabel));
    for (const b of document.querySelectorAll('.lang-switch button')) {
      b.setAttribute('aria-pressed', b.dataset.lang === lang ? 'true' : 'false');
    }
    if (busy) submit.textContent = t('signing_in');
    // textContent only: the server's error text is never treated as markup.
    errorEl.textContent = shown === null ? '' : shown.raw !== undefined ? shown.raw : t(shown.key, shown.vars);
  }

  function showError(e) {
    shown = e;
    render();
  }

  for (const b of document.querySelectorAll('.lang-switch button')) {
    b.addEventListener('click', () => {
      lang = b.dataset.lang === 'en' ? 'en' : 'zh';
      try {
        localStorage.setItem(LANG_KEY, lang);
      } catch (_) {
        // Switched for this page only.
      }
      render();
    });
  }

  function setBusy(on) {
    busy = on;
    submit.disabled = on;
    submit.textContent = t(on ? 'signing_in' : 'sign_in');
    form.setAttribute('aria-busy', on ? 'true' : 'false');
  }

  // Turns a failed response into something to show: known codes are localised,
  // anything else shows the server's own `error` text.
  function errorFrom(status, body) {
    const code = body && typeof body.code === 'string' ? body.code : null;
    if (code === 'invalid_credentials' || code === 'throttled' || code === 'busy') return { key: code };
    if (code === 'totp_required' || code === 'totp_invalid') return { key: code };
    if (body && typeof body.error === 'string' && body.error.trim() !== '') return { raw: body.error };
    if (status === 401) return { key: 'invalid_credentials' };
    if (status === 429) return { key: 'throttled' };
    if (status === 503) return { key: 'busy' };
    return { key: 'failed', vars: { status: status } };
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (busy) return;
    const username = user.value.trim();
    const password = pass.value;
    user.setAttribute('aria-invalid', username === '' ? 'true' : 'false');
    pass.setAttribute('aria-invalid', password === '' ? 'true' : 'false');
    if (username === '' || password === '') {
      showError({ key: 'missing' });
      (username === '' ? user : pass).focus();
      return;
    }
    showError(null);
    setBusy(true);
    fetch('/api/login', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(totpRow.hidden ? { username: username, password: password }
        : { username: username, password: password, totp: totpInput.value.trim() }),
    })
      .then((res) => {
        if (res.ok) {
          location.href = '/';
          return;
        }
        return res
          .json()
          .catch(() => null)
          .then((body) => {
            setBusy(false);
            showError(errorFrom(res.status, body));
            const code = body && body.code;
            if (code === 'totp_required' || code === 'totp_invalid') {
              // The password was right; a second factor is asked for (issue 8 §2).
              totpRow.hidden = false;
              totpInput.value = '';
              totpInput.focus();
            } else if (res.status === 401) {
              pass.setAttribute('aria-invalid', 'true');
              pass.select();
              pass.focus();
            }
          });
      })
      .catch(() => {
        setBusy(false);
        showError({ key: 'network' });
      });
  });

  render();
})();
