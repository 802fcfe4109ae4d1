//! The account pages in a real headless Chromium (issue 8 §2), at 1920×1080 and on a 390×844 phone: an admin
//! signs in, follows the header link to the user management page and disables a user there, and that user's
//! open session is refused at once; the admin enables the user again on the phone, is refused (with the
//! reason, in Chinese and in English) when disabling the last admin, and resets the user's password; the user
//! then signs in through the login page, is led to the change-password form, changes it and reaches the HMI.
//! Screenshots go to `target/` for a human to look at.
//!
//! The pages are read through their hooks only: `tr[data-user][data-disabled]`, `button[data-action]`,
//! `#error[data-code]`, `#status`, `body[data-forced]`, `#admin-link`.

mod support;

use std::path::PathBuf;

use serde_json::{json, Value};
use support::browser::{js_string, Browser};
use support::*;

const PW: &str = "a long enough password";

fn target_dir() -> PathBuf {
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().expect("CARGO_TARGET_TMPDIR lies in the target directory").to_owned()
}

fn row(user: &str) -> String {
    format!("tr[data-user=\"{user}\"]")
}

/// Waits until the users table shows `user` with `data-disabled` = `disabled`.
async fn wait_disabled(browser: &Browser, user: &str, disabled: bool) {
    let expr = format!("document.querySelector({})?.dataset.disabled ?? null", js_string(&row(user)));
    let want = if disabled { "true" } else { "false" };
    browser
        .wait_for(
            &format!("{user} shown disabled={disabled}"),
            &expr,
            "document.querySelector('main').outerHTML",
            |v| (v == want).then_some(()),
        )
        .await;
}

/// Nothing wider than the viewport (no sideways scrolling on a phone).
async fn assert_fits(browser: &Browser, width: u32) {
    let w = browser.eval("document.documentElement.scrollWidth").await.unwrap();
    assert!(w.as_u64().unwrap() <= u64::from(width), "the page is {w} px wide in a {width} px viewport");
}

async fn sign_in(browser: &Browser, server: &TestServer, user: &str, password: &str) {
    browser.navigate(&format!("{}/login", server.base)).await;
    browser
        .wait_for("the login form", "!!document.querySelector('#login-form')", "location.href", |v| {
            (v == true).then_some(())
        })
        .await;
    browser.type_into("#username", user).await;
    browser.type_into("#password", password).await;
    browser.click("#submit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_manages_users_on_the_page_and_a_reset_user_must_change_the_password() {
    let browser = Browser::launch().await;
    let server = start(VILLAGE).await;
    let admin = server.admin().await;
    let body = json!({ "username": "crew1", "password": PW, "role": "crew" }).to_string();
    let r =
        http(&server.base, "POST", "/api/users", &[("content-type", "application/json"), ("cookie", &admin)], &body)
            .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let crew = server.login("crew1", PW).await;
    assert_eq!(server.get("/api/me", &crew).await.status, 200);

    // 1920×1080: the admin signs in and follows the header link to the user management page.
    browser.set_viewport(1920, 1080, false).await;
    sign_in(&browser, &server, "admin", ADMIN_PASSWORD).await;
    browser
        .wait_for(
            "the HMI with the admin link",
            "[location.pathname, document.querySelector('#admin-link')?.hidden]",
            "location.href",
            |v| (v[0] == "/" && v[1] == false).then_some(()),
        )
        .await;
    browser.click("#admin-link").await;
    wait_disabled(&browser, "crew1", false).await;
    assert_eq!(browser.eval("location.pathname").await.unwrap(), "/admin");

    // Disable crew1 through the page: the page shows it, and crew1's open session is refused at once.
    browser.click(&format!("{} button[data-action=\"disable\"]", row("crew1"))).await;
    wait_disabled(&browser, "crew1", true).await;
    let status = browser.eval("document.querySelector('#status').textContent").await.unwrap();
    assert!(status.as_str().unwrap().contains("crew1"), "{status}");
    let r = server.get("/api/me", &crew).await;
    assert_eq!((r.status, r.json()["code"].clone()), (401, json!("unauthenticated")), "the disabled user's session");
    assert_fits(&browser, 1920).await;
    browser.screenshot(&target_dir().join("accounts-admin-1920.png")).await;

    // 390×844 phone: enable crew1 again, and be refused disabling the last admin, with the reason.
    browser.set_viewport(390, 844, true).await;
    browser.navigate(&format!("{}/admin", server.base)).await;
    wait_disabled(&browser, "crew1", true).await;
    assert_fits(&browser, 390).await;
    browser.click(&format!("{} button[data-action=\"enable\"]", row("crew1"))).await;
    wait_disabled(&browser, "crew1", false).await;
    browser.click(&format!("{} button[data-action=\"disable\"]", row("admin"))).await;
    let error = browser
        .wait_for(
            "the last-admin refusal",
            "[document.querySelector('#error').dataset.code, document.querySelector('#error').textContent]",
            "document.querySelector('main').outerHTML",
            |v: &Value| (v[0] == "last_admin").then(|| v[1].as_str().unwrap().to_owned()),
        )
        .await;
    assert!(error.contains("最后一个启用的管理员"), "{error}");
    browser.click(".lang-switch button[data-lang=\"en\"]").await;
    browser
        .wait_for(
            "the reason in English",
            "document.querySelector('#error').textContent",
            "document.documentElement.lang",
            |v| v.as_str()?.contains("last enabled admin").then_some(()),
        )
        .await;
    wait_disabled(&browser, "admin", false).await;
    browser.screenshot(&target_dir().join("accounts-admin-390.png")).await;

    // Reset crew1's password in the dialog.
    browser.click(".lang-switch button[data-lang=\"zh\"]").await;
    browser.click(&format!("{} button[data-action=\"reset\"]", row("crew1"))).await;
    browser.type_into("#reset-password", "reset by the admin").await;
    browser.click("#reset-submit").await;
    browser
        .wait_for(
            "the reset shown",
            &format!("document.querySelector({})?.textContent ?? ''", js_string(&row("crew1"))),
            "document.querySelector('main').outerHTML",
            |v| v.as_str().unwrap_or("").contains("须改密码").then_some(()),
        )
        .await;
    assert_eq!(browser.page_errors(), Vec::<String>::new(), "uncaught exceptions or console errors in the page");

    // crew1 signs in with the reset password (phone): led to the change-password form, then to the HMI.
    browser.click("#logout").await;
    browser.wait_for("the login page", "location.pathname", "location.href", |v| (v == "/login").then_some(())).await;
    sign_in(&browser, &server, "crew1", "reset by the admin").await;
    browser
        .wait_for(
            "the forced change-password form",
            "[location.pathname, document.body?.dataset.forced ?? null]",
            "document.documentElement.outerHTML.slice(0, 3000)",
            |v| (v[0] == "/account" && v[1] == "true").then_some(()),
        )
        .await;
    assert_fits(&browser, 390).await;
    browser.screenshot(&target_dir().join("accounts-forced-change-390.png")).await;
    browser.type_into("#old-password", "reset by the admin").await;
    // A common password is refused with the reason in the page's language first.
    browser.type_into("#new-password", "password2024").await;
    browser.type_into("#new-password2", "password2024").await;
    browser.click("#change-submit").await;
    let refusal = browser
        .wait_for("the policy refusal", "[document.querySelector('#password-error').dataset.code, document.querySelector('#password-error').textContent]",
            "document.querySelector('main').outerHTML", |v: &Value| (v[0] == "password_common").then(|| v[1].as_str().unwrap().to_owned()))
        .await;
    assert!(refusal.contains("过于常见"), "{refusal}");
    browser.type_into("#new-password", "crew chose this one").await;
    browser.type_into("#new-password2", "crew chose this one").await;
    browser.click("#change-submit").await;
    browser
        .wait_for(
            "the HMI after the change",
            "[location.pathname, document.querySelector('#conn')?.dataset.state ?? null]",
            "location.href",
            |v| (v[0] == "/" && v[1] == "live").then_some(()),
        )
        .await;
    // The new password signs in (server.login asserts 200).
    server.login("crew1", "crew chose this one").await;
    assert_eq!(browser.page_errors(), Vec::<String>::new(), "uncaught exceptions or console errors in the page");
    server.app.shutdown().await;
}

/// The TOTP code of `secret` now (+ `offset_ms`), by the system clock the server also uses.
fn code(secret: &str, offset_ms: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    actors::totp::code_at(secret, now + offset_ms).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_turns_on_two_factor_sign_in_on_the_page_and_the_login_page_asks_for_the_code() {
    let browser = Browser::launch().await;
    let server = start(VILLAGE).await;
    let admin = server.admin().await;
    let body = json!({ "username": "ops1", "password": PW, "role": "operator" }).to_string();
    let r =
        http(&server.base, "POST", "/api/users", &[("content-type", "application/json"), ("cookie", &admin)], &body)
            .await;
    assert_eq!(r.status, 201, "{}", r.body);

    browser.set_viewport(390, 844, true).await;
    sign_in(&browser, &server, "ops1", PW).await;
    // Once the header shows the user, it no longer moves under the pointer.
    browser
        .wait_for(
            "the HMI with the user shown",
            "[location.pathname, document.querySelector('#user-name')?.textContent]",
            "location.href",
            |v| (v[0] == "/" && v[1] == "ops1").then_some(()),
        )
        .await;
    // The header's account links wrap on a phone rather than widen the page.
    assert_fits(&browser, 390).await;
    // On a phone the header wraps and moves as the "last update" age ticks, so a pointer aimed at the link can
    // miss it: the link is followed as a keyboard user would (its element's own click), not by coordinates.
    browser.eval("document.querySelector('#account-link').click()").await.unwrap();
    browser
        .wait_for(
            "the two-factor section",
            "document.querySelector('#totp-state')?.dataset.state ?? null",
            "document.querySelector('main')?.outerHTML ?? location.href",
            |v| (v == "off").then_some(()),
        )
        .await;
    browser.click("#totp-enrol").await;
    let secret = browser
        .wait_for(
            "the secret shown once",
            "document.querySelector('#totp-secret').textContent",
            "document.querySelector('main').outerHTML",
            |v| v.as_str().filter(|s| s.len() == 32).map(str::to_owned),
        )
        .await;
    let uri = browser.eval("document.querySelector('#totp-uri').textContent").await.unwrap();
    assert!(uri.as_str().unwrap().starts_with("otpauth://totp/Waterworks:ops1?secret="), "{uri}");
    assert_fits(&browser, 390).await;
    browser.screenshot(&target_dir().join("accounts-totp-enrol-390.png")).await;
    browser.type_into("#totp-code", &code(&secret, 0)).await;
    browser.click("#totp-confirm").await;
    browser
        .wait_for(
            "two-factor on",
            "document.querySelector('#totp-state').dataset.state",
            "document.querySelector('main').outerHTML",
            |v| (v == "on").then_some(()),
        )
        .await;

    // Signing in again: the password alone is not enough; the login page asks for the code.
    browser.click("#logout").await;
    browser.wait_for("the login page", "location.pathname", "location.href", |v| (v == "/login").then_some(())).await;
    sign_in(&browser, &server, "ops1", PW).await;
    let asked = browser
        .wait_for(
            "the code asked for",
            "[document.querySelector('#totp-row').hidden, document.querySelector('#error').textContent]",
            "document.querySelector('main').outerHTML",
            |v: &Value| (v[0] == false).then(|| v[1].as_str().unwrap().to_owned()),
        )
        .await;
    assert!(asked.contains("验证码"), "{asked}");
    // The confirming code's step is used up: the next step's code (accepted as clock skew) signs in.
    browser.type_into("#totp", &code(&secret, 30_000)).await;
    browser.click("#submit").await;
    browser
        .wait_for(
            "the HMI after the code",
            "[location.pathname, document.querySelector('#conn')?.dataset.state ?? null]",
            "location.href + ' ' + (document.querySelector('#error')?.textContent ?? '')",
            |v| (v[0] == "/" && v[1] == "live").then_some(()),
        )
        .await;
    assert_eq!(browser.page_errors(), Vec::<String>::new(), "uncaught exceptions or console errors in the page");
    server.app.shutdown().await;
}
