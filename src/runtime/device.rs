//! The GPU's identity at run time, for the TensorRT cache key: the CUDA driver API
//! (`libcuda.so.1`: name, compute capability, driver version) and TensorRT's
//! `getInferLibVersion` (`libnvinfer.so.10`), both loaded with `dlopen` so that
//! nothing links against CUDA. Every step is fallible: on a machine without them the
//! caller keys the cache as "unknown".
use std::ffi::{c_char, c_int, c_void, CStr, CString};

/// A library opened with `dlopen`, never closed (the CUDA driver and TensorRT stay
/// loaded for the process's sessions anyway).
struct Library(*mut c_void, &'static str);

impl Library {
    fn open(name: &'static str) -> Result<Library, String> {
        let c = CString::new(name).map_err(|e| e.to_string())?;
        // SAFETY: a NUL-terminated name; RTLD_LAZY | RTLD_LOCAL loads without exporting.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(format!("cannot load {name}: {}", dlerror()));
        }
        Ok(Library(handle, name))
    }

    /// The symbol `name` as a function pointer of type `F`.
    ///
    /// # Safety
    /// `F` must be the symbol's true C function type.
    unsafe fn symbol<F: Copy>(&self, name: &str) -> Result<F, String> {
        debug_assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
        let c = CString::new(name).map_err(|e| e.to_string())?;
        let p = unsafe { libc::dlsym(self.0, c.as_ptr()) };
        if p.is_null() {
            return Err(format!("{} has no {name}", self.1));
        }
        Ok(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) })
    }
}

fn dlerror() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated message.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown error".into()
    } else {
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

type CuInit = unsafe extern "C" fn(c_int) -> c_int;
type CuDriverGetVersion = unsafe extern "C" fn(*mut c_int) -> c_int;
type CuDeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
type CuDeviceGetName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
type CuDeviceGetAttribute = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;
type GetInferLibVersion = unsafe extern "C" fn() -> i32;

const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: c_int = 75;
const CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: c_int = 76;

fn check(call: &str, code: c_int) -> Result<(), String> {
    if code == 0 {
        Ok(())
    } else {
        Err(format!("{call} failed with CUDA error {code}"))
    }
}

/// (name, compute capability "9.0", driver API version "13.0") of CUDA device `device_id`.
pub(super) fn cuda_device(device_id: u32) -> Result<(String, String, String), String> {
    let lib = Library::open("libcuda.so.1")?;
    // SAFETY: the CUDA driver API's documented signatures (cuda.h).
    unsafe {
        let init: CuInit = lib.symbol("cuInit")?;
        let version: CuDriverGetVersion = lib.symbol("cuDriverGetVersion")?;
        let get: CuDeviceGet = lib.symbol("cuDeviceGet")?;
        let get_name: CuDeviceGetName = lib.symbol("cuDeviceGetName")?;
        let attribute: CuDeviceGetAttribute = lib.symbol("cuDeviceGetAttribute")?;
        check("cuInit", init(0))?;
        let mut v: c_int = 0;
        check("cuDriverGetVersion", version(&mut v))?;
        let ordinal = c_int::try_from(device_id).map_err(|e| e.to_string())?;
        let mut dev: c_int = 0;
        check(&format!("cuDeviceGet({device_id})"), get(&mut dev, ordinal))?;
        let mut name = [0 as c_char; 256];
        check(
            "cuDeviceGetName",
            get_name(name.as_mut_ptr(), name.len() as c_int - 1, dev),
        )?;
        let name = CStr::from_ptr(name.as_ptr()).to_string_lossy().trim().to_string();
        let (mut major, mut minor): (c_int, c_int) = (0, 0);
        check(
            "cuDeviceGetAttribute",
            attribute(&mut major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev),
        )?;
        check(
            "cuDeviceGetAttribute",
            attribute(&mut minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev),
        )?;
        Ok((name, format!("{major}.{minor}"), driver_version(v)))
    }
}

/// The CUDA driver API version as "major.minor" (13000 -> "13.0").
fn driver_version(v: c_int) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// TensorRT's version as "major.minor.patch", from `getInferLibVersion`.
pub(super) fn tensorrt_version() -> Result<String, String> {
    let lib = Library::open("libnvinfer.so.10")?;
    // SAFETY: `int32_t getInferLibVersion()` (NvInferRuntime.h).
    let v = unsafe { lib.symbol::<GetInferLibVersion>("getInferLibVersion")?() };
    Ok(tensorrt_version_string(v))
}

/// TensorRT 10 encodes its version as major * 10000 + minor * 100 + patch.
fn tensorrt_version_string(v: i32) -> String {
    format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_decoded() {
        assert_eq!(driver_version(13000), "13.0");
        assert_eq!(driver_version(12080), "12.8");
        assert_eq!(tensorrt_version_string(100900), "10.9.0");
        assert_eq!(tensorrt_version_string(101301), "10.13.1");
    }

    #[test]
    fn a_missing_library_is_an_error_not_a_crash() {
        let e = Library::open("libdenoiseseg-no-such-library.so.1").err().unwrap();
        assert!(e.contains("libdenoiseseg-no-such-library"), "{e}");
        // On a machine without a GPU both lookups fail cleanly; with one they succeed.
        match cuda_device(0) {
            Ok((name, cc, driver)) => assert!(!name.is_empty() && cc.contains('.') && driver.contains('.')),
            Err(e) => assert!(!e.is_empty()),
        }
        let _ = tensorrt_version();
    }
}
