//! Client certificates as principals: rustls has verified the chain against the device CA
//! by the time a request arrives; here the certificate's identity is read: its SAN URI,
//! else its first SAN DNS name, else its subject CN.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The identity a verified client certificate asserts, if it names one.
pub fn identity(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let sans: Vec<GeneralName<'_>> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| ext.value.general_names.clone())
        .unwrap_or_default();
    let uri = sans.iter().find_map(|n| match n {
        GeneralName::URI(u) => Some(u.to_string()),
        _ => None,
    });
    let dns = || {
        sans.iter().find_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
    };
    let cn = || {
        cert.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned)
    };
    uri.or_else(dns).or_else(cn).filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    fn cert(sans: Vec<SanType>, cn: Option<&str>) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        // rcgen names every certificate by default; start from an empty subject.
        params.distinguished_name = DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params
            .self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn uri_then_dns_then_cn() {
        let uri = SanType::URI("spiffe://fleet/cam-7".try_into().unwrap());
        let dns = SanType::DnsName("cam-7.fleet".try_into().unwrap());
        assert_eq!(
            identity(&cert(vec![dns.clone(), uri], Some("x"))).as_deref(),
            Some("spiffe://fleet/cam-7")
        );
        assert_eq!(
            identity(&cert(vec![dns], Some("x"))).as_deref(),
            Some("cam-7.fleet")
        );
        assert_eq!(
            identity(&cert(vec![], Some("cam-9"))).as_deref(),
            Some("cam-9")
        );
        assert_eq!(identity(&cert(vec![], None)), None);
        assert_eq!(identity(b"not a certificate"), None);
    }
}
