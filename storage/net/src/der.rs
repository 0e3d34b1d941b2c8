//! Just enough DER to read the DNS subject alternative names of an X.509 certificate, so that
//! handlers learn which node called without pulling in a full X.509 parser.

/// One TLV: (tag, contents, rest). `None` on any malformed or truncated input.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const TAG_SEQUENCE: u8 = 0x30;
const TAG_OID: u8 = 0x06;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_EXTENSIONS: u8 = 0xa3; // [3] EXPLICIT in TBSCertificate
const TAG_DNS_NAME: u8 = 0x82; // [2] IMPLICIT IA5String in GeneralName
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11]; // 2.5.29.17

/// The first DNS name in the certificate's subjectAltName extension.
pub(crate) fn first_dns_san(cert_der: &[u8]) -> Option<String> {
    let (tag, cert, _) = tlv(cert_der)?;
    if tag != TAG_SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = tlv(cert)?;
    if tag != TAG_SEQUENCE {
        return None;
    }
    // TBSCertificate has at most 10 fields; the bound makes the loop finite on any input.
    for _ in 0..16 {
        let (tag, content, rest) = tlv(tbs)?;
        tbs = rest;
        if tag != TAG_EXTENSIONS {
            continue;
        }
        let (_, mut exts, _) = tlv(content)?;
        for _ in 0..256 {
            if exts.is_empty() {
                return None;
            }
            let (_, ext, rest) = tlv(exts)?;
            exts = rest;
            let (tag, oid, mut ext_rest) = tlv(ext)?;
            if tag != TAG_OID || oid != OID_SUBJECT_ALT_NAME {
                continue;
            }
            // Skip the optional `critical` BOOLEAN.
            let (mut tag, mut value, _) = tlv(ext_rest)?;
            if tag != TAG_OCTET_STRING {
                (_, _, ext_rest) = tlv(ext_rest)?;
                (tag, value, _) = tlv(ext_rest)?;
            }
            if tag != TAG_OCTET_STRING {
                return None;
            }
            let (_, mut names, _) = tlv(value)?;
            for _ in 0..256 {
                if names.is_empty() {
                    return None;
                }
                let (tag, name, rest) = tlv(names)?;
                names = rest;
                if tag == TAG_DNS_NAME {
                    return std::str::from_utf8(name).ok().map(str::to_owned);
                }
            }
            return None;
        }
        return None;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_truncation_never_panic() {
        assert_eq!(first_dns_san(&[]), None);
        assert_eq!(first_dns_san(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(first_dns_san(&[0x30, 0x03, 0x30, 0x01]), None);
        let junk: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        for start in 0..64 {
            let _ = first_dns_san(&junk[start..]);
        }
    }
}
