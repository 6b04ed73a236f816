//! The slug against anchors GitHub gives real headings, and the checker on a small tree of
//! pages with one link of every kind, good and broken.
use std::{fs, path::Path};

use chaos_tests::TempDir;

use super::{check, heading_anchors, links, slug};

#[test]
fn slug_follows_github() {
    // Anchors as GitHub renders them for these headings (README and BENCHMARKS.md of this
    // project, and github-slugger's own fixtures).
    let cases = [
        ("Quick start", "quick-start"),
        (
            "Network faults: `chaos net drop | partition | corrupt | duplicate`",
            "network-faults-chaos-net-drop--partition--corrupt--duplicate",
        ),
        ("The 6.1-errinj kernel", "the-61-errinj-kernel"),
        (
            "Syscall delay in the VM: fentry vs raw sys_enter (`cargo xtask bench delay`)",
            "syscall-delay-in-the-vm-fentry-vs-raw-sys_enter-cargo-xtask-bench-delay",
        ),
        ("The cost of `--trace-injections`", "the-cost-of---trace-injections"),
        ("The floor: empty programs on chaos's hooks", "the-floor-empty-programs-on-chaoss-hooks"),
        ("Following a restarted target: `follow = true`", "following-a-restarted-target-follow--true"),
        ("Checks: HTTP(S), TCP, command, Prometheus", "checks-https-tcp-command-prometheus"),
        ("Über große Äpfel", "über-große-äpfel"),
        ("Emoji 🎉 here", "emoji--here"),
        ("a_b-c", "a_b-c"),
    ];
    for (heading, anchor) in cases {
        assert_eq!(slug(heading), anchor, "slug of {heading:?}");
    }
}

#[test]
fn repeated_headings_get_numbered_anchors() {
    let text = "# Notes\n\n## Notes\n\n### Notes\n\n## Notes-1\n";
    let anchors = heading_anchors(text);
    // github-slugger: notes, notes-1, notes-2; then "Notes-1" itself is taken, so notes-1-1.
    for anchor in ["notes", "notes-1", "notes-2", "notes-1-1"] {
        assert!(anchors.contains(anchor), "{anchor} missing from {anchors:?}");
    }
    assert_eq!(anchors.len(), 4);
}

#[test]
fn heading_anchors_come_from_rendered_text() {
    let text = "Setext heading\n==============\n\n## *Emphasis* and [a link](x.md) ##\n\n```\n# not a heading\n```\n";
    let anchors = heading_anchors(text);
    assert!(anchors.contains("setext-heading"), "{anchors:?}");
    assert!(anchors.contains("emphasis-and-a-link"), "{anchors:?}");
    assert!(!anchors.contains("not-a-heading"), "a line in a code block is not a heading: {anchors:?}");
}

#[test]
fn links_are_found_where_a_renderer_finds_them() {
    let text = "\
[inline](a.md) and ![image](img.png)
`[not](code.md)` in a code span

```toml
x = [\"not\"](fenced.md)
```

| table | cell |
|---|---|
| [in a table](t.md#anchor) | x |

[reference][r]

[r]: ref.md
";
    let found = links(text);
    let want: Vec<(usize, String)> =
        [(1, "a.md"), (1, "img.png"), (10, "t.md#anchor"), (12, "ref.md")].map(|(l, s)| (l, s.to_owned())).into();
    assert_eq!(found, want);
}

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[test]
fn checker_names_each_broken_link_with_file_line_and_reason() {
    let dir = TempDir::new();
    let root = dir.path();
    write(
        root,
        "README.md",
        "\
# Top

See [the guide](docs/guide.md), [a section](docs/guide.md#second-part), [here](#top),
[a folder](examples), [code](src/main.rs#L3), [the web](https://example.org/x.md#nope),
[mail](mailto:a@b.c).

[gone](docs/gone.md) and [bad anchor](docs/guide.md#third-part)
[no local heading](#bottom)
[outside](../elsewhere.md) [absolute](/docs/guide.md)
",
    );
    write(root, "docs/guide.md", "# Guide\n\n## Second part\n\nBack to the [README](../README.md#top).\n");
    write(root, "examples/x.toml", "");
    write(root, "src/main.rs", "");
    // Not the project's: never checked.
    write(root, "target/doc/broken.md", "[x](nowhere.md)");
    write(root, "vendor/aya/README.md", "[x](nowhere.md)");
    write(root, ".git/x.md", "[x](nowhere.md)");

    let broken = check(root).unwrap();
    let shown: Vec<String> = broken.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "README.md:7: broken link `docs/gone.md`: no file or directory docs/gone.md",
            "README.md:7: broken link `docs/guide.md#third-part`: docs/guide.md has no heading whose anchor is #third-part",
            "README.md:8: broken link `#bottom`: README.md has no heading whose anchor is #bottom",
            "README.md:9: broken link `../elsewhere.md`: it leaves the repository",
            "README.md:9: broken link `/docs/guide.md`: an absolute path: GitHub resolves it against its own site; write it relative to this file",
        ]
    );
}

#[test]
fn percent_escapes_are_decoded_before_lookup() {
    let dir = TempDir::new();
    let root = dir.path();
    write(root, "a.md", "[b](my%20page.md#%C3%BCber)\n");
    write(root, "my page.md", "# Über\n");
    assert_eq!(check(root).unwrap(), []);
}
