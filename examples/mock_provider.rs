//! Serves the mock OpenAI-compatible and Perplexity-compatible provider on
//! 127.0.0.1 (the one the test suite uses), for scripts that run the real
//! binary against it: `cargo run --example mock_provider -- [latency_ms]`.
//! Prints `OPENAI_BASE_URL=<url>` on the first line, then serves until killed.

use std::time::Duration;

use podforge::testing::mock_provider::MockProvider;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let latency_ms: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(0);
    let mock = MockProvider::start().await?;
    mock.set_latency(Duration::from_millis(latency_ms));
    println!("OPENAI_BASE_URL={}", mock.openai_url());
    println!("PERPLEXITY_BASE_URL={}", mock.perplexity_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
