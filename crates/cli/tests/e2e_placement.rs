//! Placement on the real binary. GPUs found by themselves, on machines without one: agents
//! read a fake inventory (`ZENITH_GPU_INVENTORY`) where NVML would answer, advertise count,
//! model and memory, and jobs are placed by `--gpu-model` and `--gpu-memory`; per-GPU
//! metrics come from it. Soft placement: `--prefer` and `--spread`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

fn inventory(c: &Cluster, name: &str, json: &str) -> String {
    let p = c.dir.path().join(format!("{name}.json"));
    std::fs::write(&p, json).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn agents_advertise_found_gpus_and_jobs_ask_for_model_and_memory() {
    let mut c = Cluster::server(&[]);
    let h100 = inventory(
        &c,
        "h100",
        r#"{"gpus": [{"model": "NVIDIA H100 80GB HBM3", "memory": "80G", "utilization": 37,
            "memory_used": "10G"}, {"model": "NVIDIA H100 80GB HBM3", "memory": "80G"}]}"#,
    );
    let t4 = inventory(
        &c,
        "t4",
        r#"{"gpus": [{"model": "Tesla T4", "memory": "15G"}]}"#,
    );
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    c.add_agent_env(
        "big",
        &["--cpus", "2", "--metrics-listen", &metrics],
        &[("ZENITH_GPU_INVENTORY", &h100)],
    );
    c.add_agent_env("small", &["--cpus", "2"], &[("ZENITH_GPU_INVENTORY", &t4)]);
    c.wait_nodes(2);
    let nodes = c.nodes();
    let big = nodes.iter().find(|n| n["name"] == "big").unwrap();
    assert_eq!(big["resources"]["gpus"], 2, "{big}");
    assert_eq!(big["labels"]["gpu.model"], "NVIDIA H100 80GB HBM3");
    assert_eq!(big["labels"]["gpu.memory"], "81920M");
    let small = nodes.iter().find(|n| n["name"] == "small").unwrap();
    assert_eq!(small["resources"]["gpus"], 1, "{small}");
    let (big_id, small_id) = (big["id"].clone(), small["id"].clone());

    // By model (any case) and by memory: only the H100 node qualifies.
    let by_model = c.submit(&[
        "--gpus",
        "1",
        "--gpu-model",
        "h100",
        "--",
        "sh",
        "-c",
        "echo $CUDA_VISIBLE_DEVICES $CUDA_DEVICE_ORDER",
    ]);
    let by_memory = c.submit(&["--gpus", "1", "--gpu-memory", "40G", "--", "true"]);
    let any = c.submit(&["--gpus", "1", "--gpu-model", "T4", "--", "true"]);
    for (id, node) in [(by_model, &big_id), (by_memory, &big_id), (any, &small_id)] {
        let j = c.wait_final(id, 30);
        assert_eq!(j["state"], "succeeded", "{j}");
        assert_eq!(&j["attempts"][0]["node"], node, "{j}");
    }
    let out = c.ok(&["job", "logs", &by_model.to_string()]);
    assert!(out.ends_with(" PCI_BUS_ID\n"), "{out}");
    // No node has it: the job waits and explain names the constraint.
    let none = c.submit(&["--gpus", "1", "--gpu-model", "A100", "--", "true"]);
    let why = c.ok(&["job", "explain", &none.to_string()]);
    assert!(why.contains("constraint gpu.model~A100 not met"), "{why}");
    c.ok(&["job", "cancel", &none.to_string()]);
    let bad = c.cli(&["submit", "--gpu-memory", "lots", "--", "true"]);
    assert_eq!(bad.status.code(), Some(2));

    // Per-GPU metrics from the inventory.
    let text = raw_get(port, "/metrics", None, None).unwrap();
    assert!(
        text.contains("zenith_agent_gpu_utilization_percent{gpu=\"0\"} 37"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "zenith_agent_gpu_memory_used_bytes{{gpu=\"0\"}} {}",
            10u64 << 30
        )),
        "{text}"
    );
}

#[test]
fn prefer_and_spread_place_tasks_on_the_real_binary() {
    let c = Cluster::with_agents(
        &[],
        &[
            ("za", &["--cpus", "4", "--label", "zone=a"]),
            (
                "zb",
                &["--cpus", "4", "--label", "zone=b", "--label", "disk=ssd"],
            ),
        ],
    );
    let nodes = c.nodes();
    let id_of = |name: &str| nodes.iter().find(|n| n["name"] == name).unwrap()["id"].clone();
    let spread = c.submit(&["--array", "1-4", "--spread", "zone", "--", "sleep", "0.5"]);
    let j = wait_for("all four running", 20, || {
        let j = c.job(spread);
        (j["tasks"]["running"] == 4).then_some(j)
    });
    let on_a = j["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["node"] == id_of("za"))
        .count();
    assert_eq!(on_a, 2, "two per zone: {j}");
    let preferred = c.submit(&["--prefer", "disk=ssd", "--", "true"]);
    let j = c.wait_final(preferred, 30);
    assert_eq!(j["attempts"][0]["node"], id_of("zb"), "{j}");
    assert_eq!(c.job(preferred)["spec"]["prefer"][0], "disk=ssd");
}
