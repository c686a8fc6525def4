//! The HTTP helpers every handler leans on: query-string parameters (tokens,
//! cursors, TTLs travel there), tokens from headers, the JSON content-type
//! test, the "body must be an object" rule, and the optional JSON bodies of
//! channel and grant creation.

use axum::body::Body;
use axum::extract::{FromRequest as _, Request};
use axum::http::{HeaderMap, HeaderValue, header};
use chantra::http::extract::{OptionalJson, is_json, query_param, require_object, token_from_headers};
use chantra_core::error::AppError;
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::Value;

use crate::cases;

/// Printable header values (what a client can send over HTTP/1.1 at all).
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{0,80}", "(Bearer|bearer|BEARER|Basic|Token)( {1,2}[ -~]{0,60})?", "[!-~]{1,10} [ -~]{0,40}"]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn query_params_come_back_as_sent(
        pairs in proptest::collection::vec((prop_oneof!["token|since|ttl|last_event_id", "\\PC{0,8}"], any::<String>()), 0..6),
        name in "token|since|ttl|last_event_id|x",
    ) {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            query.append_pair(k, v);
        }
        let query = query.finish();
        let expected = pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
        prop_assert_eq!(query_param(Some(&query), &name), expected);
        prop_assert_eq!(query_param(None, &name), None);
    }

    #[test]
    fn raw_query_strings_never_panic(raw in prop_oneof![any::<String>(), "([a-z_%0-9+]{0,8}(=[a-zA-Z0-9%+&=]{0,12})?&?){0,5}"]) {
        if let Some(value) = query_param(Some(&raw), "token") {
            // Percent-decoding is lossy for invalid UTF-8 but never grows a value beyond its input.
            prop_assert!(value.chars().count() <= raw.chars().count(), "{:?} -> {:?}", raw, value);
        }
    }

    #[test]
    fn tokens_from_headers(own in proptest::option::of(header_value()), auth in proptest::option::of(header_value())) {
        let mut headers = HeaderMap::new();
        if let Some(v) = &own {
            headers.insert("x-publish-token", HeaderValue::from_str(v).unwrap());
        }
        if let Some(v) = &auth {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        let result = token_from_headers(&headers, "x-publish-token");
        match (&own, &auth) {
            // The dedicated header wins, verbatim.
            (Some(v), _) => prop_assert_eq!(result.unwrap(), Some(v.as_str())),
            (None, None) => prop_assert_eq!(result.unwrap(), None),
            (None, Some(v)) => match v.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                    prop_assert_eq!(result.unwrap(), Some(token.trim()))
                }
                _ => prop_assert!(matches!(result, Err(AppError::InvalidToken)), "{:?}", v),
            },
        }
    }

    #[test]
    fn non_ascii_header_bytes_are_an_invalid_token(bytes in proptest::collection::vec(0x80u8..=0xff, 1..20)) {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_bytes(&bytes).unwrap());
        prop_assert!(matches!(token_from_headers(&headers, "x-read-token"), Err(AppError::InvalidToken)));
        headers.insert("x-read-token", HeaderValue::from_bytes(&bytes).unwrap());
        prop_assert!(matches!(token_from_headers(&headers, "x-read-token"), Err(AppError::InvalidToken)));
    }

    #[test]
    fn json_content_types(
        essence in "(application/json|application/[a-z.-]{1,10}\\+json|text/json|application/jsonx|[a-z]{1,8}/[a-z]{1,8})",
        upper in any::<bool>(),
        params in "(; ?[a-z]{1,8}=[a-z0-9-]{1,8}){0,2}",
        noise in any::<String>(),
    ) {
        let expected = essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"));
        let shown = if upper { essence.to_ascii_uppercase() } else { essence.clone() };
        prop_assert_eq!(is_json(&format!("{shown}{params}")), expected, "{}", shown);
        prop_assert_eq!(is_json(&format!(" {shown} {params}")), expected);
        let _ = is_json(&noise);
    }

    #[test]
    fn bodies_must_be_objects(body in prop_oneof![
        any::<Vec<u8>>(),
        "[ \t\r\n]{0,3}[\\[{\"0-9ntf-][ -~]{0,20}".prop_map(String::into_bytes),
    ]) {
        let first = body.iter().copied().find(|b| !b.is_ascii_whitespace());
        prop_assert_eq!(require_object(&body).is_ok(), first == Some(b'{'));
    }

    #[test]
    fn optional_json_bodies(
        body in prop_oneof![
            Just(String::new()),
            "[ \t\r\n]{1,3}",
            "[ \t\r\n]{0,2}null[ \t\r\n]{0,2}",
            "[ \n]?\\{[ ]?(\"visibility\"[ ]?:[ ]?(\"public\"|\"private\"|\"secret\"|null|1))?[ ]?\\}[ \n]?",
            "\\{\"(visibility|x)\":\"private\"\\}",
            "\\[\"private\"\\]|true|0|\"x\"|\\{",
            any::<String>(),
        ],
        content_type in proptest::option::of("application/json|Application/JSON; charset=utf-8|application/merge-patch\\+json|text/plain|application/x-www-form-urlencoded"),
    ) {
        let result = optional_json(&body, content_type.as_deref());
        // The oracle: absent means no bytes at all or a JSON null; anything
        // else must be declared JSON (if declared at all) and be an object of the right shape.
        let parsed = serde_json::from_str::<Value>(&body);
        let expected: Result<Option<String>, u16> = if body.is_empty() || matches!(parsed, Ok(Value::Null)) {
            Ok(None)
        } else if content_type.as_deref().is_some_and(|t| !is_json(t)) {
            Err(415)
        } else {
            match serde_json::from_str::<Create>(&body) {
                Ok(create) if matches!(parsed, Ok(Value::Object(_))) => Ok(create.visibility),
                _ => Err(400),
            }
        };
        prop_assert_eq!(result, expected, "{:?} as {:?}", body, content_type);
    }
}

/// A body like channel creation's: every field optional, unknown fields refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    visibility: Option<String>,
}

/// What `OptionalJson` makes of `body`: the field it read, or the status it refused with.
fn optional_json(body: &str, content_type: Option<&str>) -> Result<Option<String>, u16> {
    let mut request = Request::builder().method("POST").uri("/v1/channels");
    if let Some(t) = content_type {
        request = request.header(header::CONTENT_TYPE, t);
    }
    let request = request.body(Body::from(body.to_owned())).unwrap();
    futures::executor::block_on(OptionalJson::<Create>::from_request(request, &()))
        .map(|OptionalJson(create)| create.visibility)
        .map_err(|e| e.0.status())
}
