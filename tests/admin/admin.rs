//! An administrator for the tests: logs in over HTTP, keeps the cookie and the
//! CSRF token like the page does, and opens the live namespace.

use noom::client::{Client, ClientError, ConnectOptions};
use reqwest::header::{COOKIE, HeaderMap, HeaderValue, ORIGIN, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::Value;

use crate::common::TestServer;

pub const PASSWORD: &str = "correct horse battery staple";
pub const API_TOKEN: &str = "test-api-token-0123456789abcdef";

/// A server whose admin password is `PASSWORD` and API token `API_TOKEN`.
pub async fn server() -> TestServer {
    server_with(|_| {}).await
}

pub async fn server_with(tweak: impl FnOnce(&mut noom::Config)) -> TestServer {
    let hash = noom::admin::password::hash(PASSWORD).expect("hash");
    TestServer::start_with(move |c| {
        c.admin.password_hash = hash;
        c.admin.api_token = API_TOKEN.into();
        tweak(c);
    })
    .await
}

/// An HTTP client that does not follow redirects (the tests look at them).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// Posts the login form; returns the response.
pub async fn login_as(base: &str, password: &str) -> reqwest::Response {
    http()
        .post(format!("{base}/admin/login"))
        .form(&[("password", password)])
        .send()
        .await
        .expect("login request")
}

/// The `name=value` part of a `Set-Cookie` header.
pub fn cookie_pair(headers: &HeaderMap) -> Option<String> {
    let set = headers.get(SET_COOKIE)?.to_str().ok()?;
    set.split(';').next().map(str::to_string)
}

pub struct Admin {
    pub base: String,
    pub cookie: String,
    pub csrf: String,
    pub http: reqwest::Client,
}

impl Admin {
    pub async fn login(server: &TestServer) -> Admin {
        let base = server.base.clone();
        let resp = login_as(&base, PASSWORD).await;
        assert_eq!(resp.status(), 303, "login succeeds");
        let cookie = cookie_pair(resp.headers()).expect("a session cookie");
        let http = http();
        let page = http
            .get(format!("{base}/admin"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .expect("admin page");
        assert_eq!(page.status(), 200);
        let html = page.text().await.expect("html");
        let csrf = html
            .split("data-csrf=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the page carries a CSRF token")
            .to_string();
        Admin {
            base,
            cookie,
            csrf,
            http,
        }
    }

    fn origin(&self) -> HeaderValue {
        HeaderValue::from_str(&self.base).expect("origin")
    }

    /// A GET of the JSON API with the session cookie.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A state-changing request as the page sends it: cookie, CSRF header, same origin.
    pub async fn send(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .header(ORIGIN, self.origin())
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::POST, path).await
    }

    /// A POST of a JSON body as the page sends it.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .header(ORIGIN, self.origin())
            .json(body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::DELETE, path).await
    }

    /// Opens the live namespace as the admin page does.
    pub async fn live(&self) -> Result<Client, ClientError> {
        live(&self.base, Some(&self.cookie), Some(&self.base)).await
    }
}

/// Connects to the `/admin` namespace with an optional cookie and `Origin`.
pub async fn live(
    base: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
) -> Result<Client, ClientError> {
    let mut headers = Vec::new();
    if let Some(c) = cookie {
        headers.push(("cookie".to_string(), c.to_string()));
    }
    if let Some(o) = origin {
        headers.push(("origin".to_string(), o.to_string()));
    }
    Client::connect_with(
        base,
        ConnectOptions {
            namespace: "/admin".into(),
            headers,
            ..Default::default()
        },
    )
    .await
}
