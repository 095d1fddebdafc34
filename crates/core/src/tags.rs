//! Tags (`tags_v2`) and their JSON-merge-patch update (RFC 7386, CONTRACT.md §5.3).

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    pub key: String,
    pub value: String,
    /// Server-owned tags: never changed or removed by a client's patch, never copied.
    pub read_only: bool,
}

impl Tag {
    pub fn user(key: impl Into<String>, value: impl Into<String>) -> Tag {
        Tag { key: key.into(), value: value.into(), read_only: false }
    }
}

/// A tags update: `null` clears every user tag; an object sets (string) or removes (null) keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagPatch {
    ClearAll,
    Merge(Vec<(String, Option<String>)>),
}

impl TagPatch {
    /// The tags after the patch, sorted by key. Read-only tags are kept as they are.
    pub fn apply(&self, current: &[Tag]) -> Vec<Tag> {
        let mut tags: Vec<Tag> = match self {
            TagPatch::ClearAll => current.iter().filter(|t| t.read_only).cloned().collect(),
            TagPatch::Merge(changes) => {
                let mut tags = current.to_vec();
                for (key, value) in changes {
                    let existing = tags.iter().position(|t| &t.key == key);
                    match (existing, value) {
                        (Some(i), _) if tags[i].read_only => {}
                        (Some(i), Some(value)) => tags[i].value = value.clone(),
                        (Some(i), None) => {
                            tags.remove(i);
                        }
                        (None, Some(value)) => tags.push(Tag::user(key.clone(), value.clone())),
                        (None, None) => {}
                    }
                }
                tags
            }
        };
        tags.sort();
        tags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_sets_removes_and_keeps() {
        let current =
            vec![Tag::user("env", "test"), Tag::user("team", "infra"), Tag { key: "ro".into(), value: "x".into(), read_only: true }];
        let patch =
            TagPatch::Merge(vec![("env".into(), Some("prod".into())), ("team".into(), None), ("ro".into(), None), ("gone".into(), None)]);
        let after = patch.apply(&current);
        assert_eq!(after, vec![Tag::user("env", "prod"), Tag { key: "ro".into(), value: "x".into(), read_only: true }]);
        assert_eq!(TagPatch::ClearAll.apply(&current), vec![Tag { key: "ro".into(), value: "x".into(), read_only: true }]);
    }
}
