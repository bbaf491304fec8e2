//! The OpenAI client over real HTTP against the mock provider's stream
//! faults: writes cut inside UTF-8 characters and inside `data:` lines, error
//! events mid-stream, and answers cut off by the token cap.

use std::sync::Mutex;
use std::time::Duration;

use podforge::domain::FailureCode;
use podforge::pipeline::structured::{self, CallError, UsageMeter};
use podforge::providers::http::HttpPolicy;
use podforge::providers::openai::{OpenAiClient, OpenAiConfig};
use podforge::providers::{
    CallObserver, ChatMessage, ChatRequest, FinishReason, JsonSchema, LanguageModel, NoObserver, ProviderError,
};
use podforge::testing::mock_provider::{Fault, MockProvider, Target};
use serde_json::json;

const SEGMENT: Target = Target::Schema("podcast_segment");

fn client(mock: &MockProvider) -> OpenAiClient {
    podforge::app::install_crypto_provider();
    OpenAiClient::new(OpenAiConfig {
        base_url: mock.openai_url(),
        api_key: None,
        model: "mock".into(),
        context_tokens: 16_000,
        http: HttpPolicy {
            max_retries: 2,
            backoff_base: Duration::from_millis(5),
            backoff_max: Duration::from_millis(20),
            ..HttpPolicy::default()
        },
    })
    .unwrap()
}

fn schema() -> JsonSchema {
    let turn = json!({"type": "object", "properties": {
        "speaker": {"type": "string", "enum": ["小明", "小红"]},
        "text": {"type": "string"},
        "citations": {"type": "array", "items": {"type": "integer"}}}});
    JsonSchema {
        name: "podcast_segment".into(),
        schema: json!({"type": "object", "properties": {"turns": {"type": "array", "items": turn}}}),
    }
}

/// A segment request over a Chinese passage (with an emoji), so the
/// answer is mostly three- and four-byte characters.
fn messages() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("Write one podcast segment as JSON."),
        ChatMessage::user(
            "Write segment 1 of 3.\nWord budget: 160 words\n\nSources:\n\n[1] 猫\n\
             猫是一种小型食肉哺乳动物，也是猫科中唯一被驯化的物种。家猫常被称为宠物猫🐱，以区别于野生的猫科动物。\
             猫的听觉和嗅觉都很灵敏，夜间视力也很好。\n\nReturn a JSON object",
        ),
    ]
}

fn request() -> ChatRequest {
    ChatRequest {
        messages: messages(),
        schema: Some(schema()),
        max_tokens: 2_000,
        temperature: 0.7,
    }
}

#[derive(Default)]
struct Retries(Mutex<Vec<FailureCode>>);

#[async_trait::async_trait]
impl CallObserver for Retries {
    async fn retrying(&self, _attempt: u32, _delay: Duration, code: FailureCode) {
        self.0.lock().unwrap().push(code);
    }
}

#[tokio::test]
async fn writes_cut_inside_characters_or_lines_decode_to_the_same_answer() {
    let mock = MockProvider::start().await.unwrap();
    let llm = client(&mock);
    let clean = llm.complete(&request(), &NoObserver).await.unwrap();
    assert!(
        clean.content.contains('猫') && clean.content.contains('🐱'),
        "{}",
        clean.content
    );
    for fault in [Fault::SplitCharacters, Fault::SplitLines] {
        mock.fault(SEGMENT, fault.clone(), 1);
        let got = llm.complete(&request(), &NoObserver).await.unwrap();
        assert_eq!(mock.calls().last().unwrap().fault, Some(fault.clone()));
        assert!(!got.content.contains('\u{FFFD}'), "{fault:?}: {}", got.content);
        assert_eq!(got.content, clean.content, "{fault:?}");
        assert_eq!(got.finish, FinishReason::Stop);
        assert_eq!(got.usage, clean.usage);
    }
    assert_eq!(mock.calls().len(), 3, "nothing was retried");
}

#[tokio::test]
async fn an_error_mid_stream_fails_the_call_with_the_providers_message() {
    let mock = MockProvider::start().await.unwrap();
    let llm = client(&mock);
    for fault in [
        Fault::StreamErrorEvent("invalid_request_error"),
        Fault::StreamErrorData("invalid_request_error"),
    ] {
        mock.fault(SEGMENT, fault.clone(), 1);
        let before = mock.calls().len();
        let e = llm.complete(&request(), &NoObserver).await.unwrap_err();
        let ProviderError::Rejected(message) = &e else {
            panic!("{fault:?}: {e:?}");
        };
        assert!(
            message.contains("The mock provider failed with invalid_request_error")
                && message.contains("(invalid_request_error)"),
            "{fault:?}: {message}"
        );
        assert_eq!(mock.calls().len(), before + 1, "{fault:?}: not retried");
    }
    // A context-length error mid-stream is the stage's to act on.
    mock.fault(SEGMENT, Fault::StreamErrorData("context_length_exceeded"), 1);
    assert_eq!(
        llm.complete(&request(), &NoObserver).await.unwrap_err(),
        ProviderError::ContextLength
    );
}

#[tokio::test]
async fn retryable_errors_mid_stream_are_retried() {
    let mock = MockProvider::start().await.unwrap();
    let llm = client(&mock);
    // Once: the retry answers.
    mock.fault(SEGMENT, Fault::StreamErrorEvent("server_error"), 1);
    let observer = Retries::default();
    let ok = llm.complete(&request(), &observer).await.unwrap();
    assert!(ok.content.contains('猫'));
    assert_eq!(*observer.0.lock().unwrap(), vec![FailureCode::ProviderUnavailable]);
    // Every attempt: the provider's words reach the caller.
    mock.fault(SEGMENT, Fault::StreamErrorData("overloaded"), 3);
    let observer = Retries::default();
    let e = llm.complete(&request(), &observer).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Unavailable(m) if m.contains("The mock provider failed with overloaded (overloaded)")),
        "{e:?}"
    );
    assert_eq!(observer.0.lock().unwrap().len(), 2);
    mock.fault(SEGMENT, Fault::StreamErrorEvent("rate_limit_exceeded"), 3);
    assert!(matches!(
        llm.complete(&request(), &NoObserver).await.unwrap_err(),
        ProviderError::RateLimited { .. }
    ));
}

#[tokio::test]
async fn an_answer_cut_off_by_the_token_cap_is_never_taken_as_complete() {
    let mock = MockProvider::start().await.unwrap();
    let llm = client(&mock);
    mock.fault(SEGMENT, Fault::LengthFinish, 1);
    let cut = llm.complete(&request(), &NoObserver).await.unwrap();
    assert_eq!(cut.finish, FinishReason::Length);

    let meter = UsageMeter::default();
    let check = |_: &serde_json::Value| Ok(());
    // Cut off once: the repair turn asks for a shorter answer, which is used.
    mock.fault(SEGMENT, Fault::LengthFinish, 1);
    let value = structured::call(&llm, &NoObserver, &meter, schema(), messages(), 500, &check)
        .await
        .unwrap();
    let value: serde_json::Value = value;
    assert!(value["turns"].is_array());
    assert!(
        mock.calls()
            .last()
            .unwrap()
            .prompt
            .contains("cut off at the 500-token limit")
    );
    // Cut off twice: the stage fails with a code of its own.
    mock.fault(SEGMENT, Fault::LengthFinish, 2);
    match structured::call::<serde_json::Value>(&llm, &NoObserver, &meter, schema(), messages(), 500, &check).await {
        Err(CallError::Stage(e)) => {
            assert_eq!(e.code, FailureCode::OutputTruncated, "{e:?}");
            assert!(!e.retryable);
            assert!(e.message.contains("500-token limit"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
}
