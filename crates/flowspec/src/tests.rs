use super::*;

fn field_of(yaml: &str) -> String {
    let t = Templates::new();
    match parse_yaml(yaml) {
        Err(e) => e.field,
        Ok(spec) => check(&spec, &t).map(|_| String::new()).unwrap_err().field,
    }
}

fn message_of(yaml: &str) -> String {
    let t = Templates::new();
    match parse_yaml(yaml) {
        Err(e) => e.to_string(),
        Ok(spec) => check(&spec, &t).unwrap_err().to_string(),
    }
}

const DIAMOND: &str = r#"
name: diamond
params: {who: world}
steps:
  - name: a
    run: [echo, "hello {{ params.who }}"]
    outputs: {params: [x]}
  - name: b
    depends: [a]
    when: "steps.a.outputs.x == 'go'"
    script: echo {{ steps.a.outputs.x }}
  - name: c
    depends: [a]
    forEach: [1, 2, 3]
    run: [echo, "{{ item }}"]
  - name: d
    depends: [b, c]
    run: [echo, "{{ run.id }}"]
"#;

#[test]
fn a_diamond_validates_with_its_plan() {
    let spec = parse_yaml(DIAMOND).unwrap();
    let plan = check(&spec, &Templates::new()).unwrap();
    assert_eq!(plan.deps[3], vec![1, 2]);
    assert_eq!(plan.dependents[0], vec![1, 2]);
}

#[test]
fn yaml_errors_give_line_column_and_path() {
    let e = parse_yaml("name: x\nsteps:\n  - name: a\n    run: echo\n").unwrap_err();
    assert_eq!(e.field, "steps[0].run");
    assert!(e.message.contains("line 4"), "{e}");
    let e = parse_yaml("name: x\nsteps: [\n").unwrap_err();
    assert!(e.message.contains("line 2"), "{e}");
    let e =
        parse_yaml("name: x\nsteps:\n  - name: a\n    run: [x]\n    dependz: [b]\n").unwrap_err();
    assert!(e.message.contains("dependz"), "{e}");
    assert!(e.field.starts_with("steps[0]"), "{e:?}");
    // Strict booleans: `yes` is not a boolean.
    let e = parse_yaml("name: x\nsteps:\n  - name: a\n    run: [x]\n    continueOnFailure: yes\n")
        .unwrap_err();
    assert_eq!(e.field, "steps[0].continueOnFailure", "{e:?}");
}

#[test]
fn hostile_yaml_is_refused_quickly() {
    let bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n";
    assert!(parse_yaml(bomb).is_err());
    assert!(parse_yaml(&"[".repeat(100_000)).is_err());
    assert!(parse_yaml(&"x".repeat(limits::MAX_SPEC_BYTES + 1)).is_err());
}

#[test]
fn malformed_specs_name_their_field() {
    let cases: &[(&str, &str)] = &[
        ("name: Bad_Name\nsteps: [{name: a, run: [x]}]", "name"),
        ("name: x\nsteps: []", "steps"),
        ("name: x\nsteps: [{name: a, run: [x]}, {name: a, run: [y]}]", "steps[1].name"),
        ("name: x\nsteps: [{name: a-b, run: [x]}]", "steps[0].name"),
        ("name: x\nsteps: [{name: a, run: [x], depends: [zz]}]", "steps[0].depends[0]"),
        (
            "name: x\nsteps: [{name: a, run: [x], depends: [b]}, {name: b, run: [x], depends: [a]}]",
            "steps[1].depends",
        ),
        ("name: x\nsteps: [{name: a, run: [x], timeout: soon}]", "steps[0].timeout"),
        ("name: x\nschedule: '* *'\nsteps: [{name: a, run: [x]}]", "schedule"),
        ("name: x\nschedule: '* * * * *'\ntimezone: Nowhere/City\nsteps: [{name: a, run: [x]}]", "timezone"),
        ("name: x\nsteps: [{name: a, run: ['{{ params.nope }}']}]", "steps[0].run[0]"),
        ("name: x\nsteps: [{name: a, run: [x]}, {name: b, run: ['{{ steps.a.outputs.p }}']}]", "steps[1].run[0]"),
        ("name: x\nsteps: [{name: a, run: [x], outputs: {params: [p]}}, {name: b, run: ['{{ steps.a.outputs.p }}']}]", "steps[1].run[0]"),
        ("name: x\nsteps: [{name: a, run: ['{{ item }}']}]", "steps[0].run[0]"),
        ("name: x\nsteps: [{name: a, run: [x], forEach: [1], when: 'item == 1'}]", "steps[0].when"),
        ("name: x\nsteps: [{name: a, run: ['{{ unclosed ']}]", "steps[0].run[0]"),
        ("name: x\nsteps: [{name: a, run: [x], when: 'steps.a.state =='}]", "steps[0].when"),
        ("name: x\nsteps: [{name: a, script: x, run: [y]}]", "steps[0].run"),
        ("name: x\nsteps: [{name: a}]", "steps[0].run"),
        ("name: x\nsteps: [{name: a, type: approval, run: [x]}]", "steps[0].type"),
        ("name: x\nsteps: [{name: a, run: [x], outputs: {artifacts: [{name: o, path: ../etc}]}}]", "steps[0].outputs.artifacts[0].path"),
        ("name: x\nsteps: [{name: a, run: [x], inputs: {artifacts: [{from: a.o, path: in}]}}]", "steps[0].inputs.artifacts[0].from"),
        ("name: x\nsteps: [{name: a, run: [x], outputs: {artifacts: [{name: o, path: f}]}}, {name: b, depends: [a], run: [x], inputs: {artifacts: [{from: a.o, path: /abs}]}}]", "steps[1].inputs.artifacts[0].path"),
        ("name: x\nsteps: [{name: a, run: [x], outputs: {artifacts: [{name: o, path: f}]}}, {name: b, depends: [a], run: [x], inputs: {artifacts: [{from: a.nope, path: in}]}}]", "steps[1].inputs.artifacts[0].from"),
        ("name: x\nsteps: [{name: a, run: [x], failurePolicy: [{exitCodes: [300], action: ignore}]}]", "steps[0].failurePolicy[0].exitCodes"),
        ("name: x\nsteps: [{name: a, run: [x], failurePolicy: [{exitCodes: [3], action: shrug}]}]", "steps[0].failurePolicy[0].action"),
        ("name: x\nsteps: [{name: a, run: [x], retry: {limit: 1000}}]", "steps[0].retry.limit"),
        ("name: x\nsteps: [{name: a, run: [x], retry: {backoff: random}}]", "steps[0].retry.backoff"),
        ("name: x\nsteps: [{name: a, run: [x], resources: {cpus: -1}}]", "steps[0].resources.cpus"),
        ("name: x\nsteps: [{name: a, run: [x], cwd: relative}]", "steps[0].cwd"),
        ("name: x\nconcurrency: sometimes\nsteps: [{name: a, run: [x]}]", "concurrency"),
        ("name: x\nparams: {a-b: 1}\nsteps: [{name: a, run: [x]}]", "params.a-b"),
    ];
    for (yaml, field) in cases {
        assert_eq!(&field_of(yaml), field, "{yaml}\n-> {}", message_of(yaml));
    }
}

#[test]
fn params_merge_only_declared_names() {
    let spec = parse_yaml(DIAMOND).unwrap();
    let mut given = std::collections::BTreeMap::new();
    given.insert("who".to_string(), "you".to_string());
    assert_eq!(merge_params(&spec, &given).unwrap()["who"], "you");
    given.insert("nope".to_string(), "x".to_string());
    assert_eq!(
        merge_params(&spec, &given).unwrap_err().field,
        "params.nope"
    );
}

#[test]
fn ten_thousand_steps_validate_fast() {
    let mut y = String::from("name: big\nsteps:\n  - name: root\n    run: [true]\n");
    for i in 0..9_999 {
        y.push_str(&format!(
            "  - name: s{i}\n    depends: [root]\n    run: [echo, '{{{{ run.id }}}}']\n"
        ));
    }
    let t = Templates::new();
    let spec = parse_yaml(&y).unwrap();
    check(&spec, &t).unwrap();
    assert_eq!(spec.steps.len(), 10_000);
}

#[test]
fn the_shipped_json_schema_is_current() {
    let generated = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/flow.schema.json");
    if std::env::var_os("ZENITH_BLESS").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let shipped = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        shipped == generated,
        "docs/flow.schema.json is stale: run ZENITH_BLESS=1 cargo test -p zenith-flowspec"
    );
    let v: serde_json::Value = serde_json::from_str(&shipped).unwrap();
    let step = &v["$defs"]["StepSpec"]["properties"];
    for field in [
        "run",
        "script",
        "forEach",
        "failurePolicy",
        "continueOnFailure",
        "type",
        "inputs",
    ] {
        assert!(step.get(field).is_some(), "schema lacks steps[].{field}");
    }
}

#[test]
fn the_documented_examples_validate() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let t = Templates::new();
    for doc in ["docs/flows.md", "README.md"] {
        let text = std::fs::read_to_string(format!("{root}/{doc}")).unwrap();
        let blocks: Vec<&str> = text
            .split("```yaml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .collect();
        assert!(!blocks.is_empty(), "{doc} has no yaml example");
        for b in blocks {
            let spec = parse_yaml(b).unwrap_or_else(|e| panic!("{doc}: {e}\n{b}"));
            check(&spec, &t).unwrap_or_else(|e| panic!("{doc}: {e}\n{b}"));
        }
    }
}

#[test]
fn check_all_reports_every_error_with_its_path() {
    let y = "name: Bad_Name\nsteps:\n  - {name: a, run: [true], priority: 9999999}\n  - {name: b, run: [true], retry: {limit: 1000}}\n  - {name: c, run: [echo, '{{ params.nope }}']}\n  - {name: d, run: [true]}\n";
    let spec = parse_yaml(y).unwrap();
    let errors = crate::check_all(&spec, &Templates::new()).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "name",
            "steps[0].priority",
            "steps[1].retry.limit",
            "steps[2].run[1]"
        ]
    );
    // `check` gives the first, as before.
    assert_eq!(check(&spec, &Templates::new()).unwrap_err().field, "name");
    // The graph itself wrong: nothing after it is judged.
    let cyc = parse_yaml("name: c\nsteps:\n  - {name: a, depends: [b], run: [true]}\n  - {name: b, depends: [a], run: [true]}\n").unwrap();
    assert_eq!(
        crate::check_all(&cyc, &Templates::new()).unwrap_err().len(),
        1
    );
}
