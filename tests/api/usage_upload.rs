//! The manual upload form at `/usage_data/new`: over HTTP, and in headless Chromium.

use crate::helpers::TestApp;
use crate::usage_data::{counts, minimal_with, FULL, MINIMAL};
use diesel::prelude::*;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use version_app::db::schema::{usage_data, usage_data_raw};

async fn upload(app: &TestApp, name: &str, bytes: Vec<u8>) -> (u16, String) {
    let response = app.upload(name, bytes).await;
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn the_form_explains_where_the_payload_is_and_posts_a_file() {
    let app = TestApp::spawn().await;
    let response = app.get("/usage_data/new").await;
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    for needle in [
        "enctype=\"multipart/form-data\"",
        "type=\"file\"",
        "<label for=\"file\"",
        ">Upload</button>",
        "Metrics and profiling",
        "Download payload",
    ] {
        assert!(page.contains(needle), "form lacks {needle}");
    }
    assert!(!page.contains("<script"), "works without JavaScript");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external assets"
    );
}

#[tokio::test]
async fn an_upload_stores_what_an_automatic_post_stores_with_source_manual() {
    let app = TestApp::spawn().await;
    let (status, page) = upload(&app, "2026-01-08 payload.json", FULL.to_vec()).await;
    assert_eq!(status, 201, "{page}");
    assert!(page.contains("gitlab.acme-0000.example.com"));
    assert!(page.contains("18.9.0-ee"));
    assert!(page.contains("2026-01-08T21:54:39+00:00"));
    let (rows, raws, metrics) = counts(&app);
    assert_eq!((rows, raws), (1, 1));
    assert!(page.contains(&format!(">{metrics}<")), "metrics read shown");
    let db = app.store();
    let mut conn = db.get().unwrap();
    let (id, source): (i64, String) = version_app::with_conn!(&mut conn, |c| {
        usage_data::table
            .inner_join(usage_data_raw::table)
            .select((usage_data::id, usage_data::source))
            .first(c)
            .unwrap()
    });
    let raw = version_app::db::models::usage_data_raw::find_raw_payload(&mut conn, id)
        .unwrap()
        .unwrap();
    assert_eq!(source, "manual");
    assert_eq!(raw, FULL);
    assert!(page.contains(&format!("id=\"usage-data-id\">{id}<")));

    // Uploading the same file again is recognised, not stored twice.
    let (status, page) = upload(&app, "again.json", FULL.to_vec()).await;
    assert_eq!(status, 201);
    assert!(page.contains("received before"));
    assert_eq!(counts(&app).0, 1);
}

#[tokio::test]
async fn bad_uploads_re_render_the_form_with_a_clear_message() {
    let app = TestApp::spawn_with(|s| s.ingest.max_body_bytes = 64 * 1024).await;
    let cases: [(Vec<u8>, u16, &str); 5] = [
        (Vec::new(), 400, "The file is empty."),
        (b"hello, world".to_vec(), 400, "The file is not JSON"),
        (b"[1, 2]".to_vec(), 400, "not a Service Ping payload"),
        (
            minimal_with(json!({"uuid": null})),
            400,
            "not a Service Ping payload: missing required field `uuid`",
        ),
        (FULL.to_vec(), 413, "The file is too large"),
    ];
    for (bytes, status, message) in cases {
        let (got, page) = upload(&app, "payload.json", bytes).await;
        assert_eq!(got, status, "{message}: {page}");
        assert!(page.contains(message), "{message} missing from {page}");
        assert!(page.contains("role=\"alert\""));
        assert!(page.contains("type=\"file\""), "the form is shown again");
    }
    // A form without the file field at all.
    let form = reqwest::multipart::Form::new().text("other", "x");
    let response = app
        .client
        .post(app.url("/usage_data"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("Choose a payload file"));
    assert_eq!(counts(&app), (0, 0, 0));
    // Content that fits: stored.
    let (status, _) = upload(&app, "ok.json", MINIMAL.to_vec()).await;
    assert_eq!(status, 201);
}

/// chromedriver on a free port, killed on drop.
pub(crate) struct Driver {
    child: Child,
    pub(crate) port: u16,
    pub(crate) _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Starts chromedriver, or explains why the browser test cannot run: that fails under CI
/// (which installs Chromium in .ci/setup.d/chromium.sh) and skips elsewhere.
pub(crate) fn start_driver() -> Option<Driver> {
    if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(CHROMEDRIVER).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but {CHROMIUM} or {CHROMEDRIVER} is missing (.ci/setup.d/chromium.sh installs them)"
        );
        println!(
            "skipped: headless Chromium not installed (apt-get install chromium chromium-driver)"
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Driver {
        child,
        port,
        _profile: tempfile::tempdir().unwrap(),
    })
}

#[tokio::test]
async fn chromium_uploads_a_payload_through_the_form() {
    let Some(driver) = start_driver() else {
        return;
    };
    let app = TestApp::spawn().await;
    let profile = driver._profile.path().display().to_string();
    let capabilities: serde_json::Map<String, serde_json::Value> = serde_json::from_value(json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     format!("--user-data-dir={profile}")]
        }
    }))
    .unwrap();
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let browser = fantoccini::ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("WebDriver session");

    let files = tempfile::tempdir().unwrap();
    let good = files.path().join("2026-01-08 payload.json");
    std::fs::write(&good, FULL).unwrap();
    let empty = files.path().join("empty.json");
    std::fs::write(&empty, b"").unwrap();
    use fantoccini::Locator;

    // A wrong file first: the form comes back with the message.
    browser.goto(&app.url("/usage_data/new")).await.unwrap();
    let alert = upload_in_browser(&browser, &empty, "upload-error").await;
    assert!(alert.text().await.unwrap().contains("The file is empty."));

    // Then the real payload.
    let id = upload_in_browser(&browser, &good, "usage-data-id").await;
    let id: i64 = id.text().await.unwrap().trim().parse().unwrap();
    assert!(id > 0);
    let hostname = browser.find(Locator::Id("hostname")).await.unwrap();
    assert_eq!(
        hostname.text().await.unwrap(),
        "gitlab.acme-0000.example.com"
    );
    let metrics: i64 = browser
        .find(Locator::Id("metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(counts(&app), (1, 1, metrics));
    browser.close().await.unwrap();
}

/// Chooses `file` in the form, clicks Upload, and waits for the element `expect_id` of the
/// page that comes back.
async fn upload_in_browser(
    browser: &fantoccini::Client,
    file: &std::path::Path,
    expect_id: &str,
) -> fantoccini::elements::Element {
    use fantoccini::Locator;
    let input = browser.find(Locator::Id("file")).await.unwrap();
    input.send_keys(&file.display().to_string()).await.unwrap();
    browser
        .find(Locator::XPath("//button[text()='Upload']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::Id(expect_id))
        .await
        .unwrap()
}
