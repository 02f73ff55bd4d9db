//! Who is asking, as far as the protocol lets us know: only the country of the client's
//! address, for the version check and the Service Ping alike. The address itself is used
//! for the lookup and goes no further.

use actix_web::HttpRequest;
use std::net::{IpAddr, SocketAddr};

use crate::geoip::CountryCode;
use crate::state::AppState;

/// The client's country, when a GeoIP database is configured and knows the address.
pub fn client_country(req: &HttpRequest, state: &AppState) -> Option<CountryCode> {
    let geoip = state.geoip.as_ref()?;
    geoip.country(client_ip(req, state.settings.server.trust_forwarded_for)?)
}

/// The client's address: the connection's peer, or, when the operator says a proxy in front
/// sets it (`trust_forwarded_for`), the first address of `X-Forwarded-For`.
pub fn client_ip(req: &HttpRequest, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|first| parse_forwarded_address(first.trim()));
        if forwarded.is_some() {
            return forwarded;
        }
    }
    req.peer_addr().map(|addr| addr.ip())
}

/// `192.0.2.1`, `2001:db8::1`, and the `192.0.2.1:4711` / `[2001:db8::1]:4711` forms some
/// proxies write.
fn parse_forwarded_address(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_in_every_form() {
        for (text, ip) in [
            ("192.0.2.1", "192.0.2.1"),
            ("192.0.2.1:4711", "192.0.2.1"),
            ("2001:db8::1", "2001:db8::1"),
            ("[2001:db8::1]:4711", "2001:db8::1"),
        ] {
            assert_eq!(parse_forwarded_address(text), ip.parse().ok(), "{text}");
        }
        assert_eq!(parse_forwarded_address("unknown"), None);
        assert_eq!(parse_forwarded_address(""), None);
    }
}
