//! Where a request's end user is, as the runtime says — never the client. The runtime adapter
//! attaches it to the request (an extension): the Cloudflare adapter from the request's `cf`
//! facts (Cloudflare's own, and `CF-Connecting-IP`, which Cloudflare sets), the native host from
//! a proxy's headers only when the operator names that proxy (`STACK_TRUSTED_PROXY`). Without
//! either, there is no location: a client's `X-Forwarded-For` or `CF-IPCountry` is ignored.

use serde_json::{json, Value};

use crate::http::Request;

/// The end user's location, as upstream's `ip_info` carries it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndUserLocation {
    /// The client's address.
    pub ip: Option<String>,
    /// ISO country code.
    pub country_code: Option<String>,
    /// Region (subdivision) code.
    pub region_code: Option<String>,
    /// City.
    pub city_name: Option<String>,
    /// Latitude.
    pub latitude: Option<f64>,
    /// Longitude.
    pub longitude: Option<f64>,
    /// IANA time zone.
    pub tz_identifier: Option<String>,
}

impl EndUserLocation {
    /// Upstream's `ip_info` object; `is_trusted` is true because only the runtime or a named
    /// proxy supplies one.
    pub fn ip_info(&self) -> Value {
        json!({
            "ip": self.ip, "is_trusted": true, "country_code": self.country_code, "region_code": self.region_code,
            "city_name": self.city_name, "latitude": self.latitude, "longitude": self.longitude,
            "tz_identifier": self.tz_identifier,
        })
    }
}

/// The proxy whose headers the native host believes (`STACK_TRUSTED_PROXY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustedProxy {
    /// Cloudflare in front: `CF-Connecting-IP`, `CF-IPCountry` and its visitor-location headers
    /// (`CF-Region-Code`, `CF-IPCity`, `CF-IPLatitude`, `CF-IPLongitude`, `CF-Timezone`).
    Cloudflare,
    /// A reverse proxy that sets `X-Forwarded-For`: the first address, no location.
    XForwardedFor,
}

/// The location a runtime attached to `req`.
pub fn end_user_location(req: &Request) -> Option<&EndUserLocation> {
    req.extensions().get::<EndUserLocation>()
}

/// The location in a trusted proxy's headers.
pub fn from_proxy_headers(headers: &http::HeaderMap, proxy: TrustedProxy) -> Option<EndUserLocation> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let owned = |name: &str| text(name).map(str::to_string);
    match proxy {
        TrustedProxy::Cloudflare => {
            let location = EndUserLocation {
                ip: owned("cf-connecting-ip"),
                // `XX` and `T1` are Cloudflare's "unknown" and Tor.
                country_code: owned("cf-ipcountry").filter(|c| c != "XX" && c != "T1"),
                region_code: owned("cf-region-code"),
                city_name: owned("cf-ipcity"),
                latitude: text("cf-iplatitude").and_then(|v| v.parse().ok()),
                longitude: text("cf-iplongitude").and_then(|v| v.parse().ok()),
                tz_identifier: owned("cf-timezone"),
            };
            (location != EndUserLocation::default()).then_some(location)
        }
        TrustedProxy::XForwardedFor => {
            let first = text("x-forwarded-for")?.split(',').next()?.trim().to_string();
            Some(EndUserLocation { ip: Some(first), ..EndUserLocation::default() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_is_believed_only_for_its_own_headers() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-forwarded-for", "198.51.100.1, 10.0.0.1".parse().unwrap());
        headers.insert("cf-ipcountry", "CH".parse().unwrap());
        headers.insert("cf-region-code", "ZH".parse().unwrap());
        let cloudflare = from_proxy_headers(&headers, TrustedProxy::Cloudflare).unwrap();
        assert_eq!((cloudflare.ip, cloudflare.country_code.as_deref()), (None, Some("CH")));
        let forwarded = from_proxy_headers(&headers, TrustedProxy::XForwardedFor).unwrap();
        assert_eq!((forwarded.ip.as_deref(), forwarded.country_code), (Some("198.51.100.1"), None));
        headers.clear();
        headers.insert("cf-ipcountry", "XX".parse().unwrap());
        assert_eq!(from_proxy_headers(&headers, TrustedProxy::Cloudflare), None);
    }
}
