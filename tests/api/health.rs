use crate::helpers::TestApp;

#[tokio::test]
async fn health_answers_without_the_store() {
    let app = TestApp::spawn().await;
    let response = app.get("/-/health").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn ready_reports_a_reachable_store() {
    let app = TestApp::spawn().await;
    let response = app.get("/-/ready").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["store"], "ok");
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/nope").await.status(), 404);
}
