//! swift-ring-builder's device notation, so operators' scripts carry over:
//!
//! - add value: `[r<region>]z<zone>-<ip>:<port>[R<repl_ip>:<repl_port>]/<device>[_<meta>]`
//! - search value: any left-to-right subset of
//!   `d<id>r<region>z<zone>-<ip>:<port>R<repl_ip>:<repl_port>/<device>_<meta>`
//!   (e.g. `d3`, `r1z2`, `z2-10.0.0.1`, `10.0.0.1:6200/sdb`, `/sdb`)
//! - set-info value: `[<ip>][:<port>][R<repl_ip>[:<repl_port>]][/<device>][_<meta>]`
//!
//! IPv6 addresses go in brackets: `z1-[::1]:6200/sda`.

use anyhow::{Context, Result, bail};
use cairn_ring::{Device, DeviceId, DeviceInfo, NewDevice};

/// A parsed search value; `None` fields match anything.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DeviceFilter {
    pub id: Option<DeviceId>,
    pub region: Option<u32>,
    pub zone: Option<u32>,
    pub ip: Option<String>,
    pub port: Option<u16>,
    pub replication_ip: Option<String>,
    pub replication_port: Option<u16>,
    pub device: Option<String>,
    pub meta: Option<String>,
}

impl DeviceFilter {
    pub fn matches(&self, d: &Device) -> bool {
        self.id.is_none_or(|v| v == d.id)
            && self.region.is_none_or(|v| v == d.region)
            && self.zone.is_none_or(|v| v == d.zone)
            && self.ip.as_ref().is_none_or(|v| *v == d.ip)
            && self.port.is_none_or(|v| v == d.port)
            && self
                .replication_ip
                .as_ref()
                .is_none_or(|v| *v == d.replication_ip)
            && self
                .replication_port
                .is_none_or(|v| v == d.replication_port)
            && self.device.as_ref().is_none_or(|v| *v == d.device)
            && self.meta.as_ref().is_none_or(|v| *v == d.meta)
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

struct Scanner<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn eat(&mut self, c: char) -> bool {
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    /// `<prefix><digits>`, if the input continues that way.
    fn number<T: std::str::FromStr>(&mut self, prefix: char, what: &str) -> Result<Option<T>> {
        let rest = self.rest();
        let Some(after) = rest.strip_prefix(prefix) else {
            return Ok(None);
        };
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return Ok(None);
        }
        let text = &after[..digits];
        self.pos += prefix.len_utf8() + digits;
        text.parse()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{what} {text:?} is out of range"))
    }

    /// An IP or host name: bracketed IPv6, or up to the next `:`, `R`, `/` or `_`.
    fn host(&mut self) -> Result<Option<String>> {
        let rest = self.rest();
        if let Some(v6) = rest.strip_prefix('[') {
            let end = v6
                .find(']')
                .context("IPv6 address is missing its closing ']'")?;
            if end == 0 {
                bail!("empty IPv6 address '[]' in {:?}", self.s);
            }
            self.pos += end + 2;
            return Ok(Some(v6[..end].to_string()));
        }
        let len = rest.find([':', 'R', '/', '_']).unwrap_or(rest.len());
        if len == 0 {
            return Ok(None);
        }
        self.pos += len;
        Ok(Some(rest[..len].to_string()))
    }

    fn port(&mut self) -> Result<Option<u16>> {
        if !self.eat(':') {
            return Ok(None);
        }
        let rest = self.rest();
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return Ok(None);
        }
        self.pos += digits;
        rest[..digits]
            .parse()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("port {:?} is out of range", &rest[..digits]))
    }

    /// `R<ip>[:<port>]`.
    fn replication(&mut self) -> Result<(Option<String>, Option<u16>)> {
        if !self.eat('R') {
            return Ok((None, None));
        }
        Ok((self.host()?, self.port()?))
    }

    /// `/<device>` up to `_` or the end.
    fn device(&mut self) -> Option<String> {
        if !self.eat('/') {
            return None;
        }
        let rest = self.rest();
        let len = rest.find('_').unwrap_or(rest.len());
        self.pos += len;
        (len > 0).then(|| rest[..len].to_string())
    }

    fn meta(&mut self) -> Option<String> {
        if !self.eat('_') {
            return None;
        }
        let rest = self.rest().to_string();
        self.pos = self.s.len();
        Some(rest)
    }

    fn done(&self, what: &str) -> Result<()> {
        if self.pos < self.s.len() {
            bail!(
                "cannot parse {what} {:?}: unexpected {:?}",
                self.s,
                self.rest()
            );
        }
        Ok(())
    }
}

pub fn parse_search(value: &str) -> Result<DeviceFilter> {
    let mut sc = Scanner { s: value, pos: 0 };
    let mut f = DeviceFilter {
        id: sc.number('d', "device id")?,
        ..Default::default()
    };
    f.region = sc.number('r', "region")?;
    f.zone = sc.number('z', "zone")?;
    sc.eat('-');
    f.ip = sc.host()?;
    f.port = sc.port()?;
    (f.replication_ip, f.replication_port) = sc.replication()?;
    f.device = sc.device();
    f.meta = sc.meta();
    sc.done("search value")?;
    if f.is_empty() {
        bail!(
            "search value {value:?} matches nothing: use e.g. d3, r1z2, z2-10.0.0.1, 10.0.0.1:6200/sdb"
        );
    }
    Ok(f)
}

/// Parses an add value; the weight comes separately. Region defaults to 1, as in Swift.
pub fn parse_add(value: &str, weight: f64) -> Result<NewDevice> {
    let usage = "expected [r<region>]z<zone>-<ip>:<port>[R<ip>:<port>]/<device>[_<meta>], \
                 e.g. r1z1-127.0.0.1:6200/sda";
    let mut sc = Scanner { s: value, pos: 0 };
    let region = sc.number('r', "region")?.unwrap_or(1);
    let zone = sc
        .number('z', "zone")?
        .with_context(|| format!("{value:?} has no zone: {usage}"))?;
    if !sc.eat('-') {
        bail!("{value:?} has no '-' before the address: {usage}");
    }
    let ip = sc
        .host()?
        .with_context(|| format!("{value:?} has no IP: {usage}"))?;
    let port = sc
        .port()?
        .with_context(|| format!("{value:?} has no port: {usage}"))?;
    let (replication_ip, replication_port) = sc.replication()?;
    let device = sc
        .device()
        .with_context(|| format!("{value:?} has no device name: {usage}"))?;
    let meta = sc.meta().unwrap_or_default();
    sc.done("device")?;
    Ok(NewDevice {
        id: None,
        region,
        zone,
        ip,
        port,
        replication_ip,
        replication_port,
        device,
        weight,
        meta,
    })
}

/// Parses a set-info change value.
pub fn parse_change(value: &str) -> Result<DeviceInfo> {
    let mut sc = Scanner { s: value, pos: 0 };
    let mut info = DeviceInfo {
        ip: sc.host()?,
        port: sc.port()?,
        ..Default::default()
    };
    (info.replication_ip, info.replication_port) = sc.replication()?;
    info.device = sc.device();
    info.meta = sc.meta();
    sc.done("change value")?;
    if info == DeviceInfo::default() {
        bail!("change value {value:?} changes nothing: use e.g. 10.0.0.9:6200/sdc_newmeta");
    }
    Ok(info)
}

/// A weight: a non-negative finite number.
pub fn parse_weight(text: &str) -> Result<f64> {
    let w: f64 = text
        .parse()
        .with_context(|| format!("weight {text:?} is not a number"))?;
    if !w.is_finite() || w < 0.0 {
        bail!("weight {text:?} must be a finite number >= 0");
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_value_forms() {
        let d = parse_add("r2z3-10.1.2.3:6200R10.9.9.9:6300/sdb_ssd fast", 100.0).unwrap();
        assert_eq!(
            (d.region, d.zone, d.ip.as_str(), d.port),
            (2, 3, "10.1.2.3", 6200)
        );
        assert_eq!(d.replication_ip.as_deref(), Some("10.9.9.9"));
        assert_eq!(d.replication_port, Some(6300));
        assert_eq!((d.device.as_str(), d.meta.as_str()), ("sdb", "ssd fast"));
        let d = parse_add("z1-[::1]:6200/sda", 1.0).unwrap();
        assert_eq!((d.region, d.ip.as_str()), (1, "::1"));
        assert!(
            parse_add("r1-127.0.0.1:6200/sda", 1.0).is_err(),
            "zone is required"
        );
        assert!(
            parse_add("r1z1-127.0.0.1/sda", 1.0).is_err(),
            "port is required"
        );
        assert!(
            parse_add("r1z1-127.0.0.1:6200", 1.0).is_err(),
            "device is required"
        );
        assert!(
            parse_add("r1z1-127.0.0.1:99999/sda", 1.0).is_err(),
            "port range"
        );
    }

    #[test]
    fn search_value_forms() {
        assert_eq!(parse_search("d7").unwrap().id, Some(7));
        let f = parse_search("r1z2-10.0.0.1:6200/sdb").unwrap();
        assert_eq!(
            (
                f.region,
                f.zone,
                f.ip.as_deref(),
                f.port,
                f.device.as_deref()
            ),
            (Some(1), Some(2), Some("10.0.0.1"), Some(6200), Some("sdb"))
        );
        assert_eq!(parse_search("/sdc").unwrap().device.as_deref(), Some("sdc"));
        assert_eq!(
            parse_search("10.0.0.1").unwrap().ip.as_deref(),
            Some("10.0.0.1")
        );
        assert!(parse_search("").is_err());
        assert!(
            parse_search("d1x").is_err() || parse_search("d1x").unwrap().ip.as_deref() == Some("x")
        );
    }

    proptest::proptest! {
        /// Whatever an operator types, the parsers answer with a value or an error, never a
        /// panic; and a parsed add value round-trips through the device's address notation.
        #[test]
        fn parsers_never_panic(text in "\\PC{0,40}", structured in "(d[0-9]{1,6})?(r[0-9]{1,11})?(z[0-9]{1,11})?-?(\\[[0-9a-f:]{0,8}\\]?|[0-9.]{0,16})(:[0-9]{0,6})?(R[0-9.]{0,9}(:[0-9]{0,6})?)?(/[a-z_]{0,6})?(_.{0,6})?") {
            for input in [&text, &structured] {
                let _ = parse_search(input);
                let _ = parse_change(input);
                if let Ok(d) = parse_add(input, 1.0) {
                    let again = parse_add(&format!("r{}z{}-{}:{}/{}", d.region, d.zone,
                        if d.ip.contains(':') { format!("[{}]", d.ip) } else { d.ip.clone() }, d.port, d.device), 1.0);
                    proptest::prop_assert!(again.is_ok(), "{input:?} parsed but its address did not");
                }
            }
        }
    }

    #[test]
    fn change_value_forms() {
        let c = parse_change("10.0.0.9:6201/sdz_note").unwrap();
        assert_eq!(
            (
                c.ip.as_deref(),
                c.port,
                c.device.as_deref(),
                c.meta.as_deref()
            ),
            (Some("10.0.0.9"), Some(6201), Some("sdz"), Some("note"))
        );
        assert_eq!(parse_change(":6300").unwrap().port, Some(6300));
        assert!(parse_change("").is_err());
    }
}
