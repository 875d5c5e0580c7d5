//! The client's address: the TCP peer, unless the peer is a configured trusted proxy, in
//! which case the proxy chain in the one header the operator named (`X-Forwarded-For`, or
//! `Forwarded` of RFC 7239) says. The other header is ignored: proxies append to one and
//! pass a client's own copy of the other through, so reading it would let the client
//! choose the address its rate limits and audit lines are keyed by.

use crate::config::ProxyHeader;
use crate::http::Request;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// Walks the chain from the right (the hop nearest to us) past trusted proxies; the first
/// address not trusted is the client. An entry that is not an address (`unknown`,
/// `_hidden`, garbage) ends the walk at the last trusted hop: we know no better.
pub fn client_addr(req: &Request, trusted: &[IpNet], header: ProxyHeader) -> IpAddr {
    let peer = req.conn.peer.ip();
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let chain: Vec<Option<IpAddr>> = match header {
        ProxyHeader::XForwardedFor => header_list(req, "x-forwarded-for")
            .iter()
            .map(|e| parse_node(e))
            .collect(),
        ProxyHeader::Forwarded => header_list(req, "forwarded")
            .iter()
            .map(|e| for_param(e))
            .collect(),
    };
    let mut client = peer;
    for hop in chain.iter().rev() {
        match hop {
            Some(ip) => {
                client = *ip;
                if !is_trusted(*ip, trusted) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// Whether `ip` is one of the trusted proxies.
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    trusted.iter().any(|net| net.contains(&ip))
}

/// Every comma-separated element of every field with this name, in order.
fn header_list<'a>(req: &'a Request, name: &str) -> Vec<&'a str> {
    req.headers
        .iter()
        .filter(|(n, _)| n == name)
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .collect()
}

/// The `for=` parameter of one `Forwarded` element (`for=192.0.2.1;proto=https`).
fn for_param(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_node(value.trim().trim_matches('"')))
            .flatten()
    })
}

/// A node: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`, `[2001:db8::1]:8080`.
fn parse_node(node: &str) -> Option<IpAddr> {
    node.parse::<IpAddr>()
        .ok()
        .or_else(|| node.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            node.strip_prefix('[')
                .and_then(|n| n.strip_suffix(']'))
                .and_then(|n| n.parse().ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ConnInfo;
    use ProxyHeader::{Forwarded, XForwardedFor};

    fn req(peer: &str, headers: &[(&str, &str)]) -> Request {
        Request::new(
            "GET",
            "/",
            headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            Vec::new(),
            ConnInfo {
                peer: peer.parse().unwrap(),
                tls: false,
                client_cert: None,
            },
        )
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn headers_from_untrusted_peers_are_ignored() {
        let r = req("192.0.2.9:1234", &[("x-forwarded-for", "10.9.9.9")]);
        assert_eq!(
            client_addr(&r, &nets(&["10.0.0.0/8"]), XForwardedFor),
            ip("192.0.2.9")
        );
        assert_eq!(client_addr(&r, &[], XForwardedFor), ip("192.0.2.9"));
    }

    #[test]
    fn rightmost_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        let r = req(
            "10.0.0.1:1",
            &[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")],
        );
        // 6.6.6.6 was written by the client itself: not believed.
        assert_eq!(client_addr(&r, &trusted, XForwardedFor), ip("198.51.100.7"));
        let r = req(
            "10.0.0.1:1",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-for", "198.51.100.7:5000"),
            ],
        );
        assert_eq!(client_addr(&r, &trusted, XForwardedFor), ip("198.51.100.7"));
    }

    #[test]
    fn only_the_named_header_counts_and_forwarded_takes_every_node_form() {
        let trusted = nets(&["10.0.0.1/32", "2001:db8::/32"]);
        let r = req(
            "10.0.0.1:1",
            &[
                (
                    "forwarded",
                    r#"for="[2001:db8:cafe::17]:4711";proto=https, For=192.0.2.60"#,
                ),
                ("x-forwarded-for", "203.0.113.5"),
            ],
        );
        assert_eq!(client_addr(&r, &trusted, Forwarded), ip("192.0.2.60"));
        // A proxy that appends to X-Forwarded-For passes a client's own Forwarded through:
        // with XFF named, that Forwarded is not believed.
        assert_eq!(client_addr(&r, &trusted, XForwardedFor), ip("203.0.113.5"));
        let r = req("10.0.0.1:1", &[("forwarded", "for=192.0.2.99")]);
        assert_eq!(client_addr(&r, &trusted, XForwardedFor), ip("10.0.0.1"));
        let r = req(
            "10.0.0.1:1",
            &[("forwarded", r#"for=198.51.100.1, for="[2001:db8::1]:80""#)],
        );
        assert_eq!(client_addr(&r, &trusted, Forwarded), ip("198.51.100.1"));
    }

    #[test]
    fn obfuscated_or_garbage_entries_stop_at_the_last_trusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        for value in [
            "for=unknown",
            "for=_hidden",
            "by=10.0.0.1",
            "for=\"nonsense",
        ] {
            let r = req("10.0.0.1:1", &[("forwarded", value)]);
            assert_eq!(
                client_addr(&r, &trusted, Forwarded),
                ip("10.0.0.1"),
                "{value}"
            );
        }
        let r = req(
            "10.0.0.1:1",
            &[("x-forwarded-for", "1.2.3.4, junk, 10.0.0.3")],
        );
        assert_eq!(client_addr(&r, &trusted, XForwardedFor), ip("10.0.0.3"));
        let r = req("10.0.0.1:1", &[]);
        assert_eq!(client_addr(&r, &trusted, XForwardedFor), ip("10.0.0.1"));
    }

    #[test]
    fn mapped_ipv6_peers_match_ipv4_networks() {
        let r = req("[::ffff:10.0.0.1]:1", &[("x-forwarded-for", "192.0.2.1")]);
        assert_eq!(
            client_addr(&r, &nets(&["10.0.0.0/8"]), XForwardedFor),
            ip("192.0.2.1")
        );
    }
}
