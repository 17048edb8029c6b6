//! A real browser for the page tests: Debian's headless `chromium` driven
//! over WebDriver by `chromedriver` (both from `scripts/services.sh chromium`),
//! through the fantoccini client. Tests wait for elements to appear in the
//! live page and read attributes, text and computed styles from it, the way
//! a viewer's browser renders them.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};

/// Longest a test waits for an element to appear.
pub const PATIENCE: Duration = Duration::from_secs(30);

fn binary(variable: &str, default: &str, package: &str) -> String {
    let path = std::env::var(variable).unwrap_or_else(|_| default.to_owned());
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} not found: install Debian's {package} (scripts/services.sh chromium) or set {variable}"
    );
    path
}

/// One headless Chromium session with its own chromedriver; both end when
/// it is closed or dropped.
pub struct Browser {
    client: Client,
    driver: Child,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("driver_pid", &self.driver.id())
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium
    /// session on it (1920x1080, the overlay's size).
    pub async fn start() -> Self {
        let chromium = binary("LIVEVOTE_CHROMIUM", "/usr/bin/chromium", "chromium");
        let chromedriver = binary(
            "LIVEVOTE_CHROMEDRIVER",
            "/usr/bin/chromedriver",
            "chromium-driver",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free local port")
            .port();
        let mut command = Command::new(&chromedriver);
        command
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group, so that dropping the browser also ends the Chromium it started.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {chromedriver}: {e}"));
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1920,1080",
                ],
            },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("an object literal")
        };
        let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities);
        let started = Instant::now();
        let client = loop {
            match builder.connect(&format!("http://127.0.0.1:{port}")).await {
                Ok(client) => break client,
                // The driver takes a moment to listen.
                Err(e) if started.elapsed() < Duration::from_secs(20) => {
                    tracing::debug!(error = %e, "chromedriver not ready yet");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    kill_group(driver.id());
                    panic!("no WebDriver session from {chromedriver} within 20 s: {e}");
                }
            }
        };
        Self { client, driver }
    }

    /// Navigates to `url` and waits for the document to load.
    pub async fn open(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// The first element matching `css`, waiting up to [`PATIENCE`] for it
    /// to appear; the panic shows what the page held instead.
    pub async fn wait_for(&self, css: &str, what: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => {
                let source = self.client.source().await.unwrap_or_default();
                panic!("the page never showed {what} ({css}): {e}; the page:\n{source}")
            }
        }
    }

    /// The first element matching `css`, now.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Every element matching `css`, now, in document order.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("looking for {css}: {e}"))
    }

    /// `read` of the first element matching `css`. A page that re-renders
    /// (the audit and on-air pages refresh themselves) can replace the
    /// element between finding and reading it: it is then found again.
    async fn read<T, F, Fut>(&self, css: &str, what: &str, read: F) -> T
    where
        F: Fn(Element) -> Fut,
        Fut: Future<Output = Result<T, fantoccini::error::CmdError>>,
    {
        let mut tries = 0;
        loop {
            match read(self.find(css).await).await {
                Ok(value) => return value,
                Err(e) if e.is_stale_element_reference() && tries < 20 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{what} of {css}: {e}"),
            }
        }
    }

    /// Attribute `name` of the first element matching `css`.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.read(css, "an attribute", |e| async move { e.attr(name).await })
            .await
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.read(css, "an element's text", |e| async move { e.text().await })
            .await
    }

    /// The computed value of CSS property `property` of the first element matching `css`.
    pub async fn style(&self, css: &str, property: &str) -> String {
        self.read(
            css,
            "a computed style",
            |e| async move { e.css_value(property).await },
        )
        .await
    }

    /// Ends the session (Chromium quits) and the driver.
    pub async fn close(self) {
        if let Err(e) = self.client.clone().close().await {
            tracing::debug!(error = %e, "closing the WebDriver session");
        }
        // Drop ends the driver and whatever it left behind.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that failed before `close`: nothing may outlive it.
        if matches!(self.driver.try_wait(), Ok(None)) {
            kill_group(self.driver.id());
            let _ = self.driver.wait();
        }
    }
}

/// Ends every process of the group led by `pid` (chromedriver and the Chromium it started).
fn kill_group(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
