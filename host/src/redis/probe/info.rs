//! INFO: parsing its text into fields, and which sections a poll asks
//! for once the server has shown where each declared field is.

use super::snapshot::InfoField;

/// Which INFO sections to ask for. The watchers declare fields by name;
/// the first full INFO of a server tells which section each is in, and
/// from then on (Redis 7 and later take several sections in one INFO) only
/// those sections are fetched: less work for the watched Redis and for
/// the host. A declared field the server does not show keeps INFO whole.
#[derive(Debug, Default)]
pub(super) struct Sections {
    pub(super) fields: std::collections::BTreeSet<String>,
    pub(super) sections: std::collections::BTreeSet<String>,
    /// Field name to section, learnt from a full INFO.
    located: std::collections::HashMap<String, std::sync::Arc<str>>,
    /// The server takes several sections in one INFO.
    several: bool,
    /// The last plan and what it was made for (SLOWLOG, CLUSTER INFO,
    /// CLIENT LIST asked), until the fields or the server change.
    planned: Option<(Asked, Option<Vec<String>>)>,
}

/// What a plan is made for: SLOWLOG, CLUSTER INFO and CLIENT LIST asked.
type Asked = (bool, bool, bool);

impl Sections {
    /// The fields and sections the watchers read.
    pub(super) fn want(
        &mut self,
        fields: std::collections::BTreeSet<String>,
        sections: std::collections::BTreeSet<String>,
    ) {
        self.fields = fields;
        self.sections = sections;
        self.planned = None;
    }

    /// [`Self::make_plan`], made once for as long as nothing it depends
    /// on changes: a poll builds no set and no string for it.
    pub(super) fn plan(
        &mut self,
        slowlog: bool,
        cluster: bool,
        clients: bool,
    ) -> Option<&[String]> {
        let asked = (slowlog, cluster, clients);
        if self.planned.as_ref().is_none_or(|(made, _)| *made != asked) {
            self.planned = Some((asked, self.make_plan(slowlog, cluster, clients)));
        }
        self.planned.as_ref().and_then(|(_, plan)| plan.as_deref())
    }

    /// The sections to ask for, or `None` for the whole default INFO;
    /// `cluster` adds the `cluster` section (for `cluster_enabled`).
    fn make_plan(&self, slowlog: bool, cluster: bool, clients: bool) -> Option<Vec<String>> {
        if !self.several
            || (self.fields.is_empty() && self.sections.is_empty() && !cluster && !clients)
        {
            return None;
        }
        let mut wanted = self.sections.clone();
        for field in &self.fields {
            wanted.insert(self.located.get(field)?.to_string());
        }
        if slowlog {
            // `run_id` tells a restart, which resets the SLOWLOG cursor.
            wanted.insert("server".to_owned());
        }
        if cluster {
            wanted.insert("cluster".to_owned());
        }
        if clients {
            wanted.insert("clients".to_owned());
        }
        Some(wanted.into_iter().collect())
    }

    /// Learns where each field is from a full INFO.
    pub(super) fn learn(&mut self, info: &[InfoField]) {
        self.planned = None;
        self.located = info
            .iter()
            .map(|f| (f.name.clone(), f.section.clone()))
            .collect();
        self.several = info
            .iter()
            .find(|f| f.name == "redis_version")
            .and_then(|f| f.value.split('.').next()?.parse::<u32>().ok())
            .is_some_and(|major| major >= 7);
    }

    /// Forgets what was learnt (a restart may bring another version).
    pub(super) fn forget(&mut self) {
        self.planned = None;
        self.located.clear();
        self.several = false;
    }
}

/// Parses INFO text into fields tagged with their section.
pub fn parse_info(text: &str) -> Vec<InfoField> {
    parse_info_kept(text, |_| true, |_| true)
}

/// Parses an INFO reply, keeping every field of the sections
/// `whole(section)` wants (asked once per section) and elsewhere the
/// fields `field(name)` wants; only those are copied.
pub(super) fn parse_info_kept(
    text: &str,
    whole: impl Fn(&str) -> bool,
    field: impl Fn(&str) -> bool,
) -> Vec<InfoField> {
    let mut section: std::sync::Arc<str> = std::sync::Arc::from("");
    let mut all = whole(&section);
    let mut fields = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(name) = line.strip_prefix("# ") {
            section = std::sync::Arc::from(name.trim().to_ascii_lowercase());
            all = whole(&section);
        } else if let Some((name, value)) = line.split_once(':')
            && (all || field(name))
        {
            fields.push(InfoField {
                section: section.clone(),
                name: name.to_owned(),
                value: value.to_owned(),
            });
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_sections_and_fields() {
        let text = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc\r\n\r\n# Clients\r\nconnected_clients:3\r\n";
        let f = parse_info(text);
        assert_eq!(f.len(), 3);
        assert_eq!(&*f[0].section, "server");
        assert_eq!(&*f[2].section, "clients");
        assert_eq!(f[2].name, "connected_clients");
        assert_eq!(f[2].value, "3");
    }

    #[test]
    fn info_is_cut_to_the_sections_holding_the_fields() {
        let full = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc\r\n# Clients\r\nconnected_clients:3\r\n# Memory\r\nused_memory:1\r\n";
        let mut s = Sections::default();
        s.want(["connected_clients".to_owned()].into(), Default::default());
        assert_eq!(s.plan(false, false, false), None, "nothing located yet");
        s.learn(&parse_info(full));
        assert_eq!(
            s.plan(false, false, false),
            Some(&["clients".to_owned()][..])
        );
        assert_eq!(
            s.plan(false, true, false),
            Some(&["clients".to_owned(), "cluster".to_owned()][..]),
            "cluster_enabled for CLUSTER INFO"
        );
        assert_eq!(
            s.plan(true, false, false),
            Some(&["clients".to_owned(), "server".to_owned()][..]),
            "run_id for the SLOWLOG cursor"
        );
        s.want(
            [
                "connected_clients".to_owned(),
                "master_link_status".to_owned(),
            ]
            .into(),
            Default::default(),
        );
        assert_eq!(
            s.plan(false, false, false),
            None,
            "a field the server does not show"
        );
        s.want(["connected_clients".to_owned()].into(), Default::default());
        s.learn(&parse_info(&full.replace("7.0.15", "6.2.14")));
        assert_eq!(
            s.plan(false, false, false),
            None,
            "Redis 6 takes one section per INFO"
        );
        s.learn(&parse_info(full));
        s.forget();
        assert_eq!(s.plan(false, false, false), None);
    }
}
