/*
 * Shared by the account pages (/account, /admin; issue 8 §2): the language (zh-CN first, English switch,
 * remembered as the HMI does), texts for the server's error codes, and a JSON fetch helper. No markup from
 * the server is ever inserted: text only.
 */
'use strict';
(function () {
  const TEXT = {
    zh: {
      language: '语言', back: '返回监控', logout: '退出登录', account_link: '我的账户', admin_link: '用户管理',
      user: '用户', role: '角色', status: '状态', actions: '操作', client: '来源地址', created: '创建时间',
      last_seen: '最近使用', expires: '到期', revoke: '结束会话', current: '当前会话', none: '无',
      role_admin: '管理员', role_operator: '调度员', role_manager: '经理', role_crew: '外勤', role_billing: '营收',
      // Error codes from the server.
      network: '无法连接服务器，请检查网络后重试',
      failed: '操作失败（HTTP {status}）',
      unauthenticated: '登录已失效，请重新登录',
      forbidden: '没有权限执行此操作',
      password_change_required: '请先修改密码',
      wrong_password: '当前密码不正确',
      password_unchanged: '新密码不能与当前密码相同',
      password_too_short: '密码至少需要{min}个字符',
      password_too_long: '密码不能超过{max}字节',
      password_blank: '密码不能全是空白字符',
      password_repetitive: '密码至少需要{min}个不同的字符',
      password_contains_username: '密码不能包含用户名',
      password_common: '密码过于常见，请换一个',
      password_mismatch: '两次输入的新密码不一致',
      username_empty: '请输入用户名',
      username_too_long: '用户名过长',
      username_characters: '用户名只能包含字母 a-z、数字、"."、"_"、"-" 和汉字',
      username_confusable: '用户名与已有用户 {existing} 过于相似',
      user_exists: '该用户已存在',
      no_such_user: '没有这个用户',
      no_such_session: '没有这个会话',
      last_admin: '这是最后一个启用的管理员，不能禁用、删除或降级；请先设置另一个管理员',
      throttled: '尝试次数过多，请稍后再试',
      busy: '服务器正忙，请几秒后再试',
      bad_request: '请求无效：{error}',
      conflict: '冲突：{error}',
    },
    en: {
      language: 'Language', back: 'Back to the HMI', logout: 'Sign out', account_link: 'My account', admin_link: 'Users',
      user: 'User', role: 'Role', status: 'Status', actions: 'Actions', client: 'From', created: 'Created',
      last_seen: 'Last used', expires: 'Expires', revoke: 'End session', current: 'this session', none: 'none',
      role_admin: 'Admin', role_operator: 'Operator', role_manager: 'Manager', role_crew: 'Crew', role_billing: 'Billing',
      network: 'Cannot reach the server; check the network and try again',
      failed: 'Failed (HTTP {status})',
      unauthenticated: 'Your session ended; sign in again',
      forbidden: 'You may not do this',
      password_change_required: 'Change your password first',
      wrong_password: 'The current password is wrong',
      password_unchanged: 'The new password must differ from the current one',
      password_too_short: 'The password needs at least {min} characters',
      password_too_long: 'The password may have at most {max} bytes',
      password_blank: 'The password must not be only spaces',
      password_repetitive: 'The password needs at least {min} different characters',
      password_contains_username: 'The password must not contain the user name',
      password_common: 'This password is too common; choose another',
      password_mismatch: 'The two new passwords differ',
      username_empty: 'Enter a user name',
      username_too_long: 'The user name is too long',
      username_characters: 'A user name may only have letters a-z, digits, ".", "_", "-" and Chinese characters',
      username_confusable: 'The user name looks too much like the existing user {existing}',
      user_exists: 'This user exists already',
      no_such_user: 'No such user',
      no_such_session: 'No such session',
      last_admin: 'This is the last enabled admin: it cannot be disabled, deleted or demoted; make another admin first',
      throttled: 'Too many attempts; try again later',
      busy: 'The server is busy; try again in a few seconds',
      bad_request: 'Bad request: {error}',
      conflict: 'Conflict: {error}',
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
  const pages = [];

  function t(key, vars) {
    let s = (pages.length && pages[0].text[lang][key]) || TEXT[lang][key] || TEXT.en[key] || key;
    if (vars) s = s.replace(/\{(\w+)\}/g, (m, n) => (n in vars ? String(vars[n]) : m));
    return s;
  }

  function render() {
    document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
    for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
    for (const e of document.querySelectorAll('[data-i18n-label]')) e.setAttribute('aria-label', t(e.dataset.i18nLabel));
    for (const b of document.querySelectorAll('.lang-switch button')) {
      b.setAttribute('aria-pressed', b.dataset.lang === lang ? 'true' : 'false');
    }
    for (const p of pages) p.render();
  }

  // A failed response as text in the page's language: known codes localised with their params, anything else
  // the server's own English text.
  function errorText(e) {
    if (!e) return '';
    if (e.network) return t('network');
    const body = e.body || {};
    const code = typeof body.code === 'string' ? body.code : null;
    const vars = Object.assign({ status: e.status, error: body.error || '' }, body.params || {});
    if (code) {
      const known = t(code, vars);
      if (known !== code) return known;
    }
    if (typeof body.error === 'string' && body.error) return body.error;
    return t('failed', vars);
  }

  // fetch as JSON; resolves with the body (or null), rejects with {status, body} or {network: true}.
  function api(method, path, body) {
    const init = { method: method, credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(
      (res) => res.text().then((text) => {
        let parsed = null;
        try { parsed = text ? JSON.parse(text) : null; } catch (_) { parsed = null; }
        if (res.ok) return parsed;
        if (res.status === 401) location.href = '/login';
        throw { status: res.status, body: parsed };
      }),
      () => { throw { network: true }; },
    );
  }

  function time(ms) {
    if (typeof ms !== 'number') return '—';
    const d = new Date(ms);
    const p = (n) => String(n).padStart(2, '0');
    return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + ' ' + p(d.getHours()) + ':' + p(d.getMinutes());
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  document.addEventListener('DOMContentLoaded', () => {
    for (const b of document.querySelectorAll('.lang-switch button')) {
      b.addEventListener('click', () => {
        lang = b.dataset.lang === 'en' ? 'en' : 'zh';
        try { localStorage.setItem(LANG_KEY, lang); } catch (_) { /* this page only */ }
        render();
      });
    }
    const logout = document.getElementById('logout');
    if (logout) {
      logout.addEventListener('click', () => {
        api('POST', '/api/logout').catch(() => null).then(() => { location.href = '/login'; });
      });
    }
  });

  window.WW = {
    t: t, render: render, errorText: errorText, api: api, time: time, el: el,
    lang: () => lang,
    // A page registers its own texts (zh and en) and its render function.
    page: (text, renderPage) => { pages.push({ text: text, render: renderPage }); render(); },
  };
})();
