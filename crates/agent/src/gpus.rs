//! GPUs found by themselves: through NVML (the driver's management library, loaded at run
//! time by `nvml-wrapper`, so an agent without a driver starts all the same), else by the
//! `/dev/nvidiaN` device files (count only: model and memory unknown). A fake inventory
//! (`ZENITH_GPU_INVENTORY`, a JSON file) stands in for NVML where there is no GPU: the tests
//! use it, and it lets the scheduling of GPU models and memory be tried on any machine.
//!
//! What the node advertises: `gpus` = the devices' count, and labels `gpu.model` (the
//! devices' model names, comma-separated when they differ), `gpu.memory` (the smallest
//! device's memory, in MiB: `81559M`) and `gpu.count`. Jobs ask for them with
//! `--gpu-model H100` (`gpu.model ~ H100`) and `--gpu-memory 40G` (`gpu.memory >= 40G`).
//! Device indices are in PCI bus order, as NVML enumerates them; jobs get
//! `CUDA_DEVICE_ORDER=PCI_BUS_ID` so that CUDA numbers them the same way.

use nvml_wrapper::Nvml;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The variable naming a fake inventory file.
pub const FAKE_INVENTORY_ENV: &str = "ZENITH_GPU_INVENTORY";
/// Most devices one node may report.
pub const MAX_GPUS: usize = 1024;

/// One device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpu {
    pub index: u32,
    pub model: String,
    /// Bytes; 0 when unknown.
    pub memory: u64,
}

/// A device's load now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuSample {
    pub index: u32,
    /// Percent of the last sample period a kernel ran.
    pub utilization: u32,
    pub memory_used: u64,
    pub memory_total: u64,
}

enum Source {
    Nvml(Box<Nvml>),
    DevNodes,
    Fake(PathBuf),
}

/// The node's GPUs and where they were found.
pub struct Inventory {
    pub gpus: Vec<Gpu>,
    source: Source,
}

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("GPU inventory {path}: {message}")]
    Fake { path: PathBuf, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FakeFile {
    gpus: Vec<FakeGpu>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FakeGpu {
    model: String,
    /// e.g. "80G".
    memory: String,
    #[serde(default)]
    utilization: u32,
    #[serde(default)]
    memory_used: Option<String>,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            Source::Nvml(_) => "nvml".to_string(),
            Source::DevNodes => "/dev/nvidia*".to_string(),
            Source::Fake(p) => p.display().to_string(),
        };
        f.debug_struct("Inventory")
            .field("gpus", &self.gpus)
            .field("source", &source)
            .finish()
    }
}

impl Inventory {
    /// Looks for GPUs: the fake inventory when `ZENITH_GPU_INVENTORY` names one, else NVML,
    /// else `/dev/nvidiaN`; none found is an empty inventory.
    pub fn discover() -> Result<Inventory, GpuError> {
        if let Some(path) = std::env::var_os(FAKE_INVENTORY_ENV) {
            let path = PathBuf::from(path);
            let gpus = read_fake(&path)?
                .iter()
                .enumerate()
                .map(|(i, g)| fake_gpu(i, g, &path))
                .collect::<Result<Vec<_>, _>>()?;
            tracing::info!(count = gpus.len(), path = %path.display(), "GPUs from a fake inventory");
            return Ok(Inventory {
                gpus,
                source: Source::Fake(path),
            });
        }
        match Nvml::init() {
            Ok(nvml) => {
                let gpus = nvml_gpus(&nvml);
                tracing::info!(count = gpus.len(), "GPUs found through NVML");
                Ok(Inventory {
                    gpus,
                    source: Source::Nvml(Box::new(nvml)),
                })
            }
            Err(e) => {
                let gpus = dev_nodes(Path::new("/dev"));
                if !gpus.is_empty() {
                    tracing::warn!(count = gpus.len(), error = %e,
                        "NVML unavailable: GPUs counted from /dev/nvidia*, model and memory unknown");
                }
                Ok(Inventory {
                    gpus,
                    source: Source::DevNodes,
                })
            }
        }
    }

    /// No GPUs (the agent was told `--gpus 0`, or a test wants none).
    pub fn none() -> Inventory {
        Inventory {
            gpus: Vec::new(),
            source: Source::DevNodes,
        }
    }

    /// The labels the node advertises for its GPUs (none without GPUs).
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if self.gpus.is_empty() {
            return out;
        }
        let mut models: Vec<&str> = self.gpus.iter().map(|g| g.model.as_str()).collect();
        models.dedup();
        out.insert("gpu.model".into(), models.join(","));
        if let Some(min) = self.gpus.iter().map(|g| g.memory).min().filter(|m| *m > 0) {
            out.insert("gpu.memory".into(), format!("{}M", min >> 20));
        }
        out.insert("gpu.count".into(), self.gpus.len().to_string());
        out
    }

    /// Each device's load now (NVML, or the fake file read again); empty when unknown.
    pub fn sample(&self) -> Vec<GpuSample> {
        match &self.source {
            Source::Nvml(nvml) => nvml_samples(nvml, self.gpus.len()),
            Source::Fake(path) => read_fake(path)
                .map(|gs| {
                    gs.iter()
                        .enumerate()
                        .map(|(i, g)| GpuSample {
                            index: i as u32,
                            utilization: g.utilization.min(100),
                            memory_used: g
                                .memory_used
                                .as_deref()
                                .and_then(|m| zenith_model::resources::parse_bytes(m).ok())
                                .unwrap_or(0),
                            memory_total: zenith_model::resources::parse_bytes(&g.memory)
                                .unwrap_or(0),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Source::DevNodes => Vec::new(),
        }
    }
}

fn read_fake(path: &Path) -> Result<Vec<FakeGpu>, GpuError> {
    let bad = |message: String| GpuError::Fake {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let f: FakeFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if f.gpus.len() > MAX_GPUS {
        return Err(bad(format!("at most {MAX_GPUS} GPUs")));
    }
    Ok(f.gpus)
}

fn fake_gpu(i: usize, g: &FakeGpu, path: &Path) -> Result<Gpu, GpuError> {
    let memory = zenith_model::resources::parse_bytes(&g.memory).map_err(|e| GpuError::Fake {
        path: path.to_path_buf(),
        message: format!("gpus[{i}].memory: {e}"),
    })?;
    if g.model.is_empty() || g.model.len() > 128 || g.model.contains([',', '\n']) {
        return Err(GpuError::Fake {
            path: path.to_path_buf(),
            message: format!("gpus[{i}].model: 1-128 characters without ',' or newlines"),
        });
    }
    Ok(Gpu {
        index: i as u32,
        model: g.model.clone(),
        memory,
    })
}

/// Devices as NVML lists them (PCI bus order); a device NVML cannot read is skipped.
fn nvml_gpus(nvml: &Nvml) -> Vec<Gpu> {
    let count = nvml.device_count().unwrap_or(0).min(MAX_GPUS as u32);
    (0..count)
        .filter_map(|i| {
            let d = nvml
                .device_by_index(i)
                .map_err(|e| tracing::warn!(index = i, error = %e, "GPU not readable"))
                .ok()?;
            Some(Gpu {
                index: i,
                model: d
                    .name()
                    .unwrap_or_else(|_| "unknown".into())
                    .replace(',', " "),
                memory: d.memory_info().map(|m| m.total).unwrap_or(0),
            })
        })
        .collect()
}

fn nvml_samples(nvml: &Nvml, count: usize) -> Vec<GpuSample> {
    (0..count as u32)
        .filter_map(|i| {
            let d = nvml.device_by_index(i).ok()?;
            let mem = d.memory_info().ok();
            Some(GpuSample {
                index: i,
                utilization: d.utilization_rates().map(|u| u.gpu).unwrap_or(0),
                memory_used: mem.as_ref().map_or(0, |m| m.used),
                memory_total: mem.map_or(0, |m| m.total),
            })
        })
        .collect()
}

/// `/dev/nvidia0`, `/dev/nvidia1`, ... (not `nvidiactl`, `nvidia-uvm`).
fn dev_nodes(dev: &Path) -> Vec<Gpu> {
    let Ok(entries) = std::fs::read_dir(dev) else {
        return Vec::new();
    };
    let mut idx: Vec<u32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("nvidia")?
                .parse::<u32>()
                .ok()
        })
        .collect();
    idx.sort_unstable();
    idx.truncate(MAX_GPUS);
    idx.into_iter()
        .enumerate()
        .map(|(i, _)| Gpu {
            index: i as u32,
            model: "unknown".into(),
            memory: 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_files_count_and_a_fake_inventory_gives_labels() {
        let d = tempfile::tempdir().unwrap();
        for f in ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "null"] {
            std::fs::write(d.path().join(f), b"").unwrap();
        }
        assert_eq!(dev_nodes(d.path()).len(), 2);
        let p = d.path().join("inv.json");
        std::fs::write(
            &p,
            r#"{"gpus": [{"model": "NVIDIA H100 80GB HBM3", "memory": "80G", "utilization": 37,
                "memory_used": "10G"}, {"model": "NVIDIA H100 80GB HBM3", "memory": "80G"}]}"#,
        )
        .unwrap();
        let gpus: Vec<Gpu> = read_fake(&p)
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, g)| fake_gpu(i, g, &p).unwrap())
            .collect();
        let inv = Inventory {
            gpus,
            source: Source::Fake(p.clone()),
        };
        let l = inv.labels();
        assert_eq!(l["gpu.model"], "NVIDIA H100 80GB HBM3");
        assert_eq!(l["gpu.memory"], "81920M");
        assert_eq!(l["gpu.count"], "2");
        let s = inv.sample();
        assert_eq!(s[0].utilization, 37);
        assert_eq!(s[0].memory_used, 10 << 30);
        std::fs::write(&p, r#"{"gpus": [{"model": "x", "memory": "lots"}]}"#).unwrap();
        let err = read_fake(&p)
            .and_then(|g| fake_gpu(0, &g[0], &p))
            .unwrap_err();
        assert!(err.to_string().contains("gpus[0].memory"), "{err}");
    }
}
