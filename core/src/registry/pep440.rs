//! PEP 440 versions and specifier sets, enough to match the version
//! advisories exactly: epochs, release segments of any length, pre-, post-
//! and dev-releases with every spelling PEP 440 normalises (`1.0-RC1`,
//! `1.0.post2`, `1.0-2`, `v1.0`, `1.0a`), local labels, and the operators
//! `==` (with `.*`), `!=`, `<`, `<=`, `>`, `>=`, `~=`, `===`.

use std::cmp::Ordering;
use std::fmt;

/// A parsed version. Equality is PEP 440 equality (`1.0 == 1.0.0`).
#[derive(Debug, Clone)]
pub struct Version {
    pub epoch: u64,
    pub release: Vec<u64>,
    /// (kind: 0 = a, 1 = b, 2 = rc, number)
    pub pre: Option<(u8, u64)>,
    pub post: Option<u64>,
    pub dev: Option<u64>,
    pub local: Vec<LocalSegment>,
}

/// A segment of a local label (`+ubuntu.1`): numbers sort after words.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum LocalSegment {
    Word(String),
    Number(u64),
}

/// Why a version or a specifier did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pep440Error(pub String);

impl fmt::Display for Pep440Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Pep440Error {}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn number(&mut self) -> Option<u64> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if start == self.i {
            return None;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .parse()
            .ok()
    }
    fn separator(&mut self) -> bool {
        if matches!(self.peek(), Some(b'.' | b'-' | b'_')) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    /// Consumes the longest of `words` found here (case already folded).
    fn word(&mut self, words: &[&str]) -> Option<usize> {
        let rest = &self.s[self.i..];
        let mut best: Option<(usize, usize)> = None;
        for (idx, w) in words.iter().enumerate() {
            if rest.starts_with(w.as_bytes()) && best.is_none_or(|(_, l)| w.len() > l) {
                best = Some((idx, w.len()));
            }
        }
        let (idx, len) = best?;
        self.i += len;
        Some(idx)
    }
}

impl Version {
    /// Parses any spelling PEP 440 accepts, normalising it.
    pub fn parse(text: &str) -> Result<Version, Pep440Error> {
        let err = || Pep440Error(format!("{text:?} is not a PEP 440 version"));
        let lower = text.trim().to_ascii_lowercase();
        let (public, local) = match lower.split_once('+') {
            Some((p, l)) => (p.to_string(), Some(l.to_string())),
            None => (lower.clone(), None),
        };
        let mut c = Cursor {
            s: public.as_bytes(),
            i: 0,
        };
        if c.peek() == Some(b'v') {
            c.i += 1;
        }
        let first = c.number().ok_or_else(err)?;
        let (epoch, mut release) = if c.peek() == Some(b'!') {
            c.i += 1;
            (first, vec![c.number().ok_or_else(err)?])
        } else {
            (0, vec![first])
        };
        while c.peek() == Some(b'.') && c.s.get(c.i + 1).is_some_and(|b| b.is_ascii_digit()) {
            c.i += 1;
            release.push(c.number().ok_or_else(err)?);
        }
        let mut v = Version {
            epoch,
            release,
            pre: None,
            post: None,
            dev: None,
            local: Vec::new(),
        };
        // Pre-release.
        let save = c.i;
        c.separator();
        const PRE: [&str; 8] = ["alpha", "a", "beta", "b", "preview", "pre", "rc", "c"];
        match c.word(&PRE) {
            Some(idx) => {
                let kind = match idx {
                    0 | 1 => 0,
                    2 | 3 => 1,
                    _ => 2,
                };
                c.separator();
                v.pre = Some((kind, c.number().unwrap_or(0)));
            }
            None => c.i = save,
        }
        // Post-release: `.post1`, `-r1`, `rev1`, or the implicit `-1`.
        let save = c.i;
        let had_sep = c.separator();
        match c.word(&["post", "rev", "r"]) {
            Some(_) => {
                let save_n = c.i;
                c.separator();
                v.post = Some(match c.number() {
                    Some(n) => n,
                    None => {
                        c.i = save_n;
                        0
                    }
                });
            }
            None => {
                if had_sep && c.s.get(save) == Some(&b'-') {
                    match c.number() {
                        Some(n) => v.post = Some(n),
                        None => c.i = save,
                    }
                } else {
                    c.i = save;
                }
            }
        }
        // Dev-release.
        let save = c.i;
        c.separator();
        match c.word(&["dev"]) {
            Some(_) => {
                let save_n = c.i;
                c.separator();
                v.dev = Some(match c.number() {
                    Some(n) => n,
                    None => {
                        c.i = save_n;
                        0
                    }
                });
            }
            None => c.i = save,
        }
        if c.i != c.s.len() {
            return Err(err());
        }
        if let Some(local) = local {
            if local.is_empty() {
                return Err(err());
            }
            for seg in local.split(['.', '-', '_']) {
                if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(err());
                }
                v.local.push(match seg.parse::<u64>() {
                    Ok(n) if seg.bytes().all(|b| b.is_ascii_digit()) => LocalSegment::Number(n),
                    _ => LocalSegment::Word(seg.to_string()),
                });
            }
        }
        Ok(v)
    }

    /// A pre-release or a dev-release.
    pub fn is_prerelease(&self) -> bool {
        self.pre.is_some() || self.dev.is_some()
    }

    /// The version without its local label.
    pub fn public(&self) -> Version {
        Version {
            local: Vec::new(),
            ..self.clone()
        }
    }

    fn release_cmp(a: &[u64], b: &[u64]) -> Ordering {
        let n = a.len().max(b.len());
        (0..n)
            .map(|i| a.get(i).unwrap_or(&0).cmp(b.get(i).unwrap_or(&0)))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    }

    /// (0: dev-only before any pre-release, 1: pre-release, 2: final)
    fn pre_key(&self) -> (u8, u8, u64) {
        match (self.pre, self.post, self.dev) {
            (None, None, Some(_)) => (0, 0, 0),
            (Some((k, n)), _, _) => (1, k, n),
            _ => (2, 0, 0),
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| Version::release_cmp(&self.release, &other.release))
            .then_with(|| self.pre_key().cmp(&other.pre_key()))
            .then_with(|| self.post.cmp(&other.post))
            .then_with(|| {
                (self.dev.is_none(), self.dev.unwrap_or(0))
                    .cmp(&(other.dev.is_none(), other.dev.unwrap_or(0)))
            })
            .then_with(|| self.local.cmp(&other.local))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}!", self.epoch)?;
        }
        let rel: Vec<String> = self.release.iter().map(|n| n.to_string()).collect();
        f.write_str(&rel.join("."))?;
        if let Some((k, n)) = self.pre {
            write!(f, "{}{n}", ["a", "b", "rc"][k as usize])?;
        }
        if let Some(n) = self.post {
            write!(f, ".post{n}")?;
        }
        if let Some(n) = self.dev {
            write!(f, ".dev{n}")?;
        }
        if !self.local.is_empty() {
            let segs: Vec<String> = self
                .local
                .iter()
                .map(|s| match s {
                    LocalSegment::Word(w) => w.clone(),
                    LocalSegment::Number(n) => n.to_string(),
                })
                .collect();
            write!(f, "+{}", segs.join("."))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    EqPrefix,
    Ne,
    NePrefix,
    Lt,
    Le,
    Gt,
    Ge,
    Compatible,
    Arbitrary,
}

/// One clause (`<= 0.31.2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Specifier {
    op: Op,
    version: Version,
    raw: String,
}

impl Specifier {
    pub fn parse(text: &str) -> Result<Specifier, Pep440Error> {
        let t = text.trim();
        let err = |why: &str| Pep440Error(format!("{t:?} is not a PEP 440 specifier ({why})"));
        let ops = [
            ("===", Op::Arbitrary),
            ("~=", Op::Compatible),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
        ];
        let (mut op, rest) = ops
            .iter()
            .find_map(|(p, op)| t.strip_prefix(p).map(|r| (*op, r.trim())))
            .ok_or_else(|| err("no operator"))?;
        let mut vtext = rest;
        if let Some(prefix) = rest.strip_suffix(".*") {
            op = match op {
                Op::Eq => Op::EqPrefix,
                Op::Ne => Op::NePrefix,
                _ => return Err(err("`.*` only goes with == and !=")),
            };
            vtext = prefix;
        }
        let version = if op == Op::Arbitrary {
            Version::parse(vtext).unwrap_or(Version {
                epoch: 0,
                release: vec![0],
                pre: None,
                post: None,
                dev: None,
                local: Vec::new(),
            })
        } else {
            Version::parse(vtext).map_err(|e| Pep440Error(e.0))?
        };
        if op == Op::Compatible && version.release.len() < 2 {
            return Err(err("~= needs at least two release numbers"));
        }
        if !version.local.is_empty() && !matches!(op, Op::Eq | Op::Ne | Op::Arbitrary) {
            return Err(err("a local label only goes with == and !="));
        }
        Ok(Specifier {
            op,
            version,
            raw: t.to_string(),
        })
    }

    /// Whether `v` satisfies this clause (pre-releases included: an
    /// advisory about `<= 0.31.2` covers `0.31.2rc1`).
    pub fn contains(&self, v: &Version) -> bool {
        let spec = &self.version;
        let candidate = if spec.local.is_empty() {
            v.public()
        } else {
            v.clone()
        };
        let prefix_match = || {
            candidate.epoch == spec.epoch
                && spec
                    .release
                    .iter()
                    .enumerate()
                    .all(|(i, n)| candidate.release.get(i).unwrap_or(&0) == n)
        };
        match self.op {
            Op::Eq => candidate == *spec,
            Op::Ne => candidate != *spec,
            Op::EqPrefix => prefix_match(),
            Op::NePrefix => !prefix_match(),
            Op::Le => candidate <= *spec,
            Op::Ge => candidate >= *spec,
            Op::Lt => {
                candidate < *spec
                    && !(!spec.is_prerelease()
                        && candidate.is_prerelease()
                        && Version::release_cmp(&candidate.release, &spec.release)
                            == Ordering::Equal
                        && candidate.epoch == spec.epoch)
            }
            Op::Gt => {
                candidate > *spec
                    && !(spec.post.is_none()
                        && candidate.post.is_some()
                        && Version::release_cmp(&candidate.release, &spec.release)
                            == Ordering::Equal
                        && candidate.epoch == spec.epoch
                        && candidate.pre == spec.pre)
            }
            Op::Compatible => {
                let stem = &spec.release[..spec.release.len() - 1];
                candidate >= *spec
                    && candidate.epoch == spec.epoch
                    && stem
                        .iter()
                        .enumerate()
                        .all(|(i, n)| candidate.release.get(i).unwrap_or(&0) == n)
            }
            Op::Arbitrary => {
                let want = self.raw.trim_start_matches("===").trim();
                v.to_string().eq_ignore_ascii_case(want)
            }
        }
    }
}

/// A comma-separated set of clauses; all must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecifierSet(pub Vec<Specifier>);

impl SpecifierSet {
    pub fn parse(text: &str) -> Result<SpecifierSet, Pep440Error> {
        let clauses: Result<Vec<_>, _> = text
            .split(',')
            .filter(|c| !c.trim().is_empty())
            .map(Specifier::parse)
            .collect();
        let clauses = clauses?;
        if clauses.is_empty() {
            return Err(Pep440Error(format!("{text:?} has no version clause")));
        }
        Ok(SpecifierSet(clauses))
    }

    pub fn contains(&self, v: &Version) -> bool {
        self.0.iter().all(|s| s.contains(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn within(spec: &str, ver: &str) -> bool {
        SpecifierSet::parse(spec).unwrap().contains(&v(ver))
    }

    #[test]
    fn normalises_spellings() {
        for (a, b) in [
            ("1.0-RC1", "1.0rc1"),
            ("1.0.c1", "1.0rc1"),
            ("1.0alpha2", "1.0a2"),
            ("1.0-beta.3", "1.0b3"),
            ("v1.0", "1.0"),
            ("1.0a", "1.0a0"),
            ("1.0-1", "1.0.post1"),
            ("1.0.rev2", "1.0.post2"),
            ("1.0-r", "1.0.post0"),
            ("1.0.dev", "1.0.dev0"),
            ("1!2.0", "1!2.0"),
            ("1.0+Ubuntu-1", "1.0+ubuntu.1"),
            ("1.0.0", "1.0"),
        ] {
            assert_eq!(v(a).cmp(&v(b)), Ordering::Equal, "{a} vs {b}");
        }
        for bad in ["", "abc", "1.0.", "1..0", "1.0+", "1.0+a..b", "1.0 beta"] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn orders_like_pep_440() {
        let order = [
            "1.0.dev0",
            "1.0a1.dev1",
            "1.0a1",
            "1.0a2",
            "1.0b1",
            "1.0rc1",
            "1.0",
            "1.0+local",
            "1.0.post1.dev0",
            "1.0.post1",
            "1.1.dev0",
            "1.1",
            "1!0.1",
        ];
        for w in order.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(v("0.31.2").to_string(), "0.31.2");
        assert_eq!(v("1.0-rc.1+Local.7").to_string(), "1.0rc1+local.7");
    }

    #[test]
    fn specifiers_match() {
        assert!(within("<=0.31.2", "0.31.2"));
        assert!(within("<=0.31.2", "0.31.2rc1"));
        assert!(within("<=0.31.2", "0.9"));
        assert!(!within("<=0.31.2", "0.31.3"));
        assert!(!within("<=0.31.2", "0.31.2.post1"));
        assert!(within("==0.31.2", "0.31.2+metal"));
        assert!(within("==0.31.2", "0.31.2.0"));
        assert!(!within("==0.31.2", "0.31.2.post1"));
        assert!(within("==0.31.*", "0.31.9"));
        assert!(within("==0.31.*", "0.31"));
        assert!(!within("==0.31.*", "0.32.0"));
        assert!(within("!=0.31.*", "0.32"));
        assert!(within("~=0.30.1", "0.30.7"));
        assert!(!within("~=0.30.1", "0.31.0"));
        assert!(!within("~=0.30.1", "0.30.0"));
        assert!(within("~=2.2", "2.9"));
        assert!(!within("~=2.2", "3.0"));
        assert!(within(">=0.29, <0.31", "0.30.5"));
        assert!(!within(">=0.29, <0.31", "0.31.0"));
        // `<V` excludes V's own pre-releases, `>V` V's own post-releases.
        assert!(!within("<0.31", "0.31.0rc1"));
        assert!(within("<0.31rc2", "0.31.0rc1"));
        assert!(!within(">0.31", "0.31.post1"));
        assert!(within(">0.31", "0.31.1"));
        assert!(within("===0.31.2", "0.31.2"));
        assert!(!within("===0.31.2", "0.31.2.0"));
        for bad in ["0.31", "<=0.31.*", "~=1", "<1.0+local", "=>1.0", ""] {
            assert!(SpecifierSet::parse(bad).is_err(), "{bad}");
        }
    }
}
