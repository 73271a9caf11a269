//! ES256 through the Workers runtime's WebCrypto (`crypto.subtle`), whose ECDSA runs in the
//! runtime's native code instead of in wasm.
//!
//! Keys are imported as JWKs on first use and the handle kept with the key (keys live in the
//! per-isolate key cache, so an isolate imports each key once). WebCrypto's ECDSA signatures
//! are IEEE P1363 `r‖s`, which is exactly JWS's ES256 format. Called through `js_sys::Reflect`
//! rather than web-sys bindings: a Worker's global scope is none of web-sys's `Window` or
//! `WorkerGlobalScope` types, and the three calls need no more.

use std::cell::RefCell;

use serde_json::{json, Value};
use worker::js_sys::{self, Array, Function, Promise, Reflect, Uint8Array, JSON};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;

use crate::identity::crypto::base64url;

/// One key for WebCrypto: its JWK, and the imported handle once there is one.
pub struct Key {
    jwk: Value,
    usage: &'static str,
    imported: RefCell<Option<JsValue>>,
}

impl Key {
    /// The private key of `scalar` (whose public point is `point`), for signing.
    pub fn private(scalar: &[u8; 32], point: &p256::EncodedPoint) -> Key {
        let mut jwk = public_jwk(point);
        jwk["d"] = json!(base64url(scalar));
        Key { jwk, usage: "sign", imported: RefCell::new(None) }
    }

    /// The public key `point`, for verifying.
    pub fn public(point: &p256::EncodedPoint) -> Key {
        Key { jwk: public_jwk(point), usage: "verify", imported: RefCell::new(None) }
    }

    /// The `r‖s` signature of `message`.
    pub async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let key = self.handle().await?;
        let signed = call("sign", &[algorithm(), key, Uint8Array::from(message).into()]).await?;
        Ok(Uint8Array::new(&signed).to_vec())
    }

    /// Whether `signature` is this key's over `message`.
    pub async fn verify(&self, message: &[u8], signature: &[u8]) -> Result<bool, String> {
        let key = self.handle().await?;
        let args = [algorithm(), key, Uint8Array::from(signature).into(), Uint8Array::from(message).into()];
        Ok(call("verify", &args).await?.as_bool().unwrap_or(false))
    }

    async fn handle(&self) -> Result<JsValue, String> {
        if let Some(key) = self.imported.borrow().as_ref() {
            return Ok(key.clone());
        }
        let args = [
            JsValue::from_str("jwk"),
            parse(&self.jwk)?,
            parse(&json!({ "name": "ECDSA", "namedCurve": "P-256" }))?,
            JsValue::FALSE,
            Array::of1(&JsValue::from_str(self.usage)).into(),
        ];
        let key = call("importKey", &args).await?;
        *self.imported.borrow_mut() = Some(key.clone());
        Ok(key)
    }
}

fn public_jwk(point: &p256::EncodedPoint) -> Value {
    json!({
        "kty": "EC",
        "crv": "P-256",
        "x": base64url(point.x().expect("uncompressed point has x")),
        "y": base64url(point.y().expect("uncompressed point has y")),
    })
}

fn algorithm() -> JsValue {
    parse(&json!({ "name": "ECDSA", "hash": "SHA-256" })).expect("a constant JSON object")
}

fn parse(value: &Value) -> Result<JsValue, String> {
    JSON::parse(&value.to_string()).map_err(describe)
}

/// Calls `crypto.subtle.<method>(...args)` and awaits its promise.
async fn call(method: &str, args: &[JsValue]) -> Result<JsValue, String> {
    let crypto = Reflect::get(&js_sys::global(), &"crypto".into()).map_err(describe)?;
    let subtle = Reflect::get(&crypto, &"subtle".into()).map_err(describe)?;
    let function: Function = Reflect::get(&subtle, &method.into()).map_err(describe)?.dyn_into().map_err(describe)?;
    let promise: Promise =
        function.apply(&subtle, &args.iter().collect::<Array>()).map_err(describe)?.dyn_into().map_err(describe)?;
    JsFuture::from(promise).await.map_err(describe)
}

fn describe(error: JsValue) -> String {
    match error.dyn_ref::<js_sys::Error>() {
        Some(error) => String::from(error.message()),
        None => error.as_string().unwrap_or_else(|| format!("{error:?}")),
    }
}
