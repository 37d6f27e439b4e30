//! The TensorRT engine and timing caches: the subfolder of `engine-cache-dir` that one
//! session's caches live in, and whether a session build found its engine there.
//!
//! A TensorRT engine is valid only for the model, optimization profile, precision,
//! TensorRT and ONNX Runtime versions and GPU it was built for; TensorRT's own file
//! names say little of that (ONNX Runtime names engines by a hash of the graph's
//! structure and the GPU's compute capability, so new weights in the same graph, or a
//! new driver, could load a stale engine). Each session therefore gets the folder
//! [`CacheKey::folder`]: a hash of everything that makes an engine invalid, with the
//! fields written out in `key.txt` inside it. A device whose identity cannot be read
//! (no CUDA driver library at hand) is keyed as "unknown", with a warning.
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::{Error, Result};

/// The identity of the GPU an engine is built for; "unknown" fields when it could not
/// be read at run time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeviceIdentity {
    pub name: String,
    /// "9.0" for an H100/H200.
    pub compute_capability: String,
    /// CUDA driver API version, "13.0".
    pub driver: String,
    /// TensorRT library version, "10.9.0".
    pub tensorrt: String,
}

pub const UNKNOWN: &str = "unknown";

impl DeviceIdentity {
    pub fn unknown() -> DeviceIdentity {
        DeviceIdentity {
            name: UNKNOWN.into(),
            compute_capability: UNKNOWN.into(),
            driver: UNKNOWN.into(),
            tensorrt: UNKNOWN.into(),
        }
    }

    /// Whether every field was read.
    pub fn is_known(&self) -> bool {
        [&self.name, &self.compute_capability, &self.driver, &self.tensorrt]
            .iter()
            .all(|f| f.as_str() != UNKNOWN)
    }

    /// Reads the identity of CUDA device `device_id` from the CUDA driver
    /// (`libcuda.so.1`) and the TensorRT library (`libnvinfer.so.10`), loaded at run
    /// time. What cannot be read stays "unknown" and is said in the warnings returned.
    pub fn probe(device_id: u32) -> (DeviceIdentity, Vec<String>) {
        let mut id = DeviceIdentity::unknown();
        let mut warnings = Vec::new();
        match super::device::cuda_device(device_id) {
            Ok((name, cc, driver)) => {
                id.name = name;
                id.compute_capability = cc;
                id.driver = driver;
            }
            Err(e) => warnings.push(format!(
                "the GPU's identity is unknown ({e}): the TensorRT engine cache is keyed as 'unknown' device"
            )),
        }
        match super::device::tensorrt_version() {
            Ok(v) => id.tensorrt = v,
            Err(e) => warnings.push(format!(
                "the TensorRT version is unknown ({e}): the TensorRT engine cache is keyed as 'unknown' version"
            )),
        }
        (id, warnings)
    }
}

/// Everything a cached TensorRT engine depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// [`hash_bytes`] of the model file.
    pub model_hash: u64,
    /// The optimization profile, "min;opt;max" shapes ("none": ONNX Runtime's own).
    pub profile: String,
    pub fp16: bool,
    /// The ONNX Runtime library's version and build.
    pub ort: String,
    pub device: DeviceIdentity,
}

impl CacheKey {
    pub fn precision(&self) -> &'static str {
        if self.fp16 {
            "fp16"
        } else {
            "fp32"
        }
    }

    /// The subfolder's name: the model hash, the precision and a hash of the whole key,
    /// "3f2a...-fp16-9b1c...".
    pub fn folder_name(&self) -> String {
        let digest = hash_bytes(self.to_string().as_bytes());
        format!("{:016x}-{}-{:016x}", self.model_hash, self.precision(), digest)
    }

    /// The folder under `base` that holds this key's engine and timing caches.
    pub fn folder(&self, base: &Path) -> PathBuf {
        base.join(self.folder_name())
    }

    /// Creates the key's folder under `base` with its `key.txt`; returns the folder.
    pub fn create_folder(&self, base: &Path) -> Result<PathBuf> {
        let dir = self.folder(base);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let txt = dir.join("key.txt");
        if !txt.exists() {
            std::fs::write(&txt, format!("{self}\n")).map_err(io(&txt))?;
        }
        Ok(dir)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.device;
        write!(
            f,
            "model-hash={:016x}\nprofile={}\nprecision={}\nonnxruntime={}\ngpu={}\ncompute-capability={}\n\
             cuda-driver={}\ntensorrt={}",
            self.model_hash,
            self.profile,
            self.precision(),
            self.ort,
            d.name,
            d.compute_capability,
            d.driver,
            d.tensorrt
        )
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A fast 64-bit hash, the same on every platform and build: FNV-1a over 8-byte
/// little-endian words (and the tail bytes), the length, then a final avalanche.
/// Not cryptographic; it tells files apart, it does not resist forgery.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = Hasher::default();
    h.update(bytes);
    h.finish()
}

/// The incremental form of [`hash_bytes`]: updates must come in 8-byte multiples
/// except the last one.
struct Hasher {
    state: u64,
    len: u64,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher {
            state: FNV_OFFSET,
            len: 0,
        }
    }
}

impl Hasher {
    fn update(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let v = u64::from_le_bytes(w.try_into().expect("8-byte chunk"));
            self.state = (self.state ^ v).wrapping_mul(FNV_PRIME);
        }
        for &b in words.remainder() {
            self.state = (self.state ^ b as u64).wrapping_mul(FNV_PRIME);
        }
        self.len += bytes.len() as u64;
    }

    fn finish(&self) -> u64 {
        // splitmix64's finalizer over the state and the length.
        let mut z = self.state ^ self.len.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// [`hash_bytes`] of a file's contents, read in blocks.
pub fn hash_file(path: &Path) -> Result<u64> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut h = Hasher::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        // Fill the block completely (short reads happen), so that every update but
        // the last is a multiple of 8 bytes.
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(e)),
            }
        }
        h.update(&buf[..filled]);
        if filled < buf.len() {
            return Ok(h.finish());
        }
    }
}

/// Whether a session build found its TensorRT engine in the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheOutcome {
    /// No engine cache: another provider, or no `engine-cache-dir`.
    #[default]
    Off,
    /// The engine was loaded from the cache (nothing new written).
    Hit,
    /// The engine was built (and written to the cache).
    Miss,
}

impl CacheOutcome {
    pub fn name(self) -> &'static str {
        match self {
            CacheOutcome::Off => "off",
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
        }
    }
}

impl fmt::Display for CacheOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The engine files in a cache folder (name, size, modification time), sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineFiles(Vec<(String, u64, Option<SystemTime>)>);

impl EngineFiles {
    /// The `*.engine` files in `dir` (none when it cannot be read).
    pub fn scan(dir: &Path) -> EngineFiles {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "engine"))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((
                    e.file_name().to_string_lossy().into_owned(),
                    meta.len(),
                    meta.modified().ok(),
                ))
            })
            .collect();
        files.sort();
        EngineFiles(files)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What a build did, from the engine files before and after it: a hit when an
    /// engine was there and none was written or rewritten; a miss otherwise.
    pub fn outcome(&self, after: &EngineFiles) -> CacheOutcome {
        let wrote = after.0.iter().any(|f| !self.0.contains(f));
        if !self.is_empty() && !wrote {
            CacheOutcome::Hit
        } else {
            CacheOutcome::Miss
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey {
            model_hash: hash_bytes(b"model bytes"),
            profile: "image:1x3x8x8;image:1x3x512x1024;image:1x3x2160x3840".into(),
            fp16: true,
            ort: "1.31.1".into(),
            device: DeviceIdentity {
                name: "NVIDIA H200".into(),
                compute_capability: "9.0".into(),
                driver: "13.0".into(),
                tensorrt: "10.9.0".into(),
            },
        }
    }

    #[test]
    fn the_same_key_gives_the_same_folder() {
        assert_eq!(key().folder_name(), key().folder_name());
        let base = Path::new("/cache");
        assert_eq!(key().folder(base), key().folder(base));
        assert!(key().folder(base).starts_with(base));
        let name = key().folder_name();
        assert!(name.contains("-fp16-"), "{name}");
        assert!(name.starts_with(&format!("{:016x}", key().model_hash)), "{name}");
    }

    #[test]
    fn every_field_of_the_key_changes_the_folder() {
        let base = key().folder_name();
        let mut variants = Vec::new();
        let mut k = key();
        k.model_hash = hash_bytes(b"model bytes, retrained");
        variants.push(("model", k));
        let mut k = key();
        k.profile = "image:1x3x8x8;image:4x3x512x1024;image:4x3x2160x3840".into();
        variants.push(("profile", k));
        let mut k = key();
        k.fp16 = false;
        variants.push(("precision", k));
        let mut k = key();
        k.ort = "1.32.0".into();
        variants.push(("onnxruntime", k));
        let mut k = key();
        k.device.name = "NVIDIA A100".into();
        variants.push(("gpu", k));
        let mut k = key();
        k.device.compute_capability = "8.0".into();
        variants.push(("compute capability", k));
        let mut k = key();
        k.device.driver = "12.8".into();
        variants.push(("driver", k));
        let mut k = key();
        k.device.tensorrt = "10.8.0".into();
        variants.push(("tensorrt", k));
        let mut k = key();
        k.device = DeviceIdentity::unknown();
        variants.push(("unknown device", k));
        let mut seen = std::collections::HashSet::from([base.clone()]);
        for (what, k) in variants {
            let name = k.folder_name();
            assert_ne!(name, base, "{what} did not change the folder");
            assert!(seen.insert(name), "{what} collides with another variant");
        }
    }

    #[test]
    fn the_hash_is_stable_and_tells_bytes_apart() {
        // Fixed values: a cache written by one build is found by the next.
        assert_eq!(hash_bytes(b""), hash_bytes(&[]));
        assert_ne!(hash_bytes(b""), hash_bytes(b"\0"));
        assert_ne!(hash_bytes(b"\0"), hash_bytes(b"\0\0"), "length counts");
        assert_ne!(hash_bytes(b"abcdefgh1"), hash_bytes(b"abcdefgh2"));
        assert_ne!(hash_bytes(b"abcdefghijklmnop"), hash_bytes(b"ijklmnopabcdefgh"));
        assert_eq!(format!("{:016x}", hash_bytes(b"denoiseseg")), "884bda6345b97167");
    }

    #[test]
    fn a_file_hashes_as_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        // Larger than one read block, not a multiple of 8.
        let bytes: Vec<u8> = (0..(1usize << 20) + 13).map(|i| (i * 31 % 251) as u8).collect();
        let path = dir.path().join("m.onnx");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(hash_file(&path).unwrap(), hash_bytes(&bytes));
        let err = hash_file(&dir.path().join("missing.onnx")).unwrap_err().to_string();
        assert!(err.contains("missing.onnx"), "{err}");
    }

    #[test]
    fn the_folder_holds_its_key_in_writing() {
        let dir = tempfile::tempdir().unwrap();
        let folder = key().create_folder(dir.path()).unwrap();
        assert_eq!(folder, key().folder(dir.path()));
        let txt = std::fs::read_to_string(folder.join("key.txt")).unwrap();
        assert!(
            txt.contains("gpu=NVIDIA H200") && txt.contains("precision=fp16"),
            "{txt}"
        );
        // A second time finds it as it is.
        assert_eq!(key().create_folder(dir.path()).unwrap(), folder);
    }

    #[test]
    fn hits_and_misses_are_told_from_the_engine_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // An empty folder, then a build that writes an engine: a miss.
        let before = EngineFiles::scan(d);
        assert!(before.is_empty());
        std::fs::write(d.join("TensorrtExecutionProvider_TRTKernel_graph_1_sm90.engine"), b"e1").unwrap();
        std::fs::write(d.join("TensorrtExecutionProvider_cache_sm90.timing"), b"t").unwrap();
        let after = EngineFiles::scan(d);
        assert_eq!(before.outcome(&after), CacheOutcome::Miss);
        // The engine there and nothing written: a hit (other files do not count).
        let before = EngineFiles::scan(d);
        std::fs::write(d.join("TensorrtExecutionProvider_cache_sm90.timing"), b"t2").unwrap();
        assert_eq!(before.outcome(&EngineFiles::scan(d)), CacheOutcome::Hit);
        // An engine there, another one built beside it: a miss.
        std::fs::write(d.join("TensorrtExecutionProvider_TRTKernel_graph_2_sm90.engine"), b"e2").unwrap();
        assert_eq!(before.outcome(&EngineFiles::scan(d)), CacheOutcome::Miss);
        // An engine rewritten (other size): a miss.
        let before = EngineFiles::scan(d);
        std::fs::write(
            d.join("TensorrtExecutionProvider_TRTKernel_graph_1_sm90.engine"),
            b"rebuilt",
        )
        .unwrap();
        assert_eq!(before.outcome(&EngineFiles::scan(d)), CacheOutcome::Miss);
        // Nothing before and nothing after (an engine built later, at the first run): a miss.
        let empty = tempfile::tempdir().unwrap();
        let none = EngineFiles::scan(empty.path());
        assert_eq!(none.outcome(&EngineFiles::scan(empty.path())), CacheOutcome::Miss);
        // A folder that does not exist reads as empty.
        assert!(EngineFiles::scan(&d.join("nope")).is_empty());
    }

    #[test]
    fn an_unknown_device_says_so() {
        let id = DeviceIdentity::unknown();
        assert!(!id.is_known());
        assert!(key().device.is_known());
        let mut k = key();
        k.device = id;
        assert!(k.to_string().contains("gpu=unknown"));
    }
}
