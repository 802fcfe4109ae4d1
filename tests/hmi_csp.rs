//! The HMI under its Content-Security-Policy (issue 8 §5): `script-src 'self'` and `style-src 'self'`, no
//! inline script, handler or style. A real headless Chromium at 1920×1080 loads the login page (and lays it out
//! at 390×844 without sideways scrolling), signs in and loads the overview; the browser support reports every `securitypolicyviolation` as a page error, and none
//! may occur. To show the watch works, an inline handler injected at the end must be blocked and reported.

mod support;

use support::browser::Browser;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_pages_load_under_the_csp_without_a_violation() {
    let server = start(VILLAGE).await;
    let browser = Browser::launch().await;
    browser.set_viewport(1920, 1080, false).await;
    browser.navigate(&format!("{}/login", server.base)).await;
    // The login page's script ran (it renders the language switch's state) and its stylesheet applies.
    browser
        .wait_for(
            "the login page, scripted and styled",
            "[document.querySelector('.lang-switch button[aria-pressed=\"true\"]')?.dataset.lang ?? null, \
             getComputedStyle(document.querySelector('#submit')).cursor]",
            "document.documentElement.outerHTML.slice(0, 400)",
            |v| (v[0] == "zh" && v[1] == "pointer").then_some(()),
        )
        .await;
    browser.click(".lang-switch button[data-lang=\"en\"]").await;
    browser
        .wait_for("the English labels", "document.querySelector('#submit').textContent", "''", |v| {
            (v == "Sign in").then_some(())
        })
        .await;
    assert_eq!(browser.page_errors(), Vec::<String>::new(), "CSP violations or errors on the login page");
    // Its stylesheet, now a file of its own, still fits a 390 px phone: no sideways scrolling.
    browser.set_viewport(390, 844, true).await;
    browser
        .wait_for(
            "the login page laid out for a phone",
            "[document.documentElement.scrollWidth, window.innerWidth, \
             document.querySelector('#submit').getBoundingClientRect().right]",
            "''",
            |v| {
                let (scroll, width, button) = (v[0].as_f64()?, v[1].as_f64()?, v[2].as_f64()?);
                (width == 390.0 && scroll <= width && button <= width).then_some(())
            },
        )
        .await;
    browser.set_viewport(1920, 1080, false).await;
    browser.type_into("#username", "admin").await;
    browser.type_into("#password", ADMIN_PASSWORD).await;
    browser.click("#submit").await;
    browser
        .wait_for(
            "the overview, live",
            "[location.pathname, document.querySelector('#conn')?.dataset.state ?? null, \
             document.querySelectorAll('[data-device]').length]",
            "location.href + ' ' + (document.querySelector('#error')?.textContent ?? '')",
            |v| (v[0] == "/" && v[1] == "live" && v[2].as_u64().is_some_and(|n| n > 0)).then_some(()),
        )
        .await;
    assert_eq!(browser.page_errors(), Vec::<String>::new(), "CSP violations or errors on the overview");
    // The watch itself: an inline event handler is blocked, and reported.
    browser
        .eval("document.body.insertAdjacentHTML('beforeend', '<img id=\"probe\" src=\"/nowhere.png\" onerror=\"window.ran = 1\">')")
        .await
        .expect("inject the probe");
    let reported = browser
        .wait_for(
            "the probe's violation",
            "window.ran ?? 0",
            "JSON.stringify([typeof window.__cspWatch, document.querySelector('#probe')?.outerHTML])",
            |_| {
                let errors = browser.page_errors();
                errors.iter().any(|e| e.contains("CSP violation: script-src")).then_some(errors)
            },
        )
        .await;
    assert_eq!(browser.eval("window.ran ?? 0").await.unwrap(), 0, "the inline handler ran: {reported:?}");
    server.app.shutdown().await;
}
