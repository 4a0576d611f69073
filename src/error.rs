//! The one error type of the library. Every message says what went wrong and, where it helps,
//! what to do next; nothing a user controls panics.

use std::fmt;

/// Everything that can go wrong while loading a model or scoring.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the model folder could not be found.
    #[error("missing file `{name}` in the model folder{hint}")]
    MissingFile { name: String, hint: Hint },
    /// An I/O error while reading a file.
    #[error("cannot read `{name}`: {message}")]
    Io { name: String, message: String },
    /// A configuration file is malformed or names something unsupported.
    #[error("bad config `{file}`: {message}")]
    Config { file: String, message: String },
    /// A safetensors file is corrupt or truncated.
    #[error("bad safetensors file `{file}`: {message}")]
    Safetensors { file: String, message: String },
    /// A weight the model needs is not in the checkpoint.
    #[error("missing weight `{0}` in the checkpoint (is this a Hugging Face CLIPModel?)")]
    MissingWeight(String),
    /// A weight has a different shape than the config implies.
    #[error("weight `{name}` has shape {got:?}, but config.json implies {expected:?}")]
    WeightShape {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// A weight is stored in a dtype we cannot convert.
    #[error("weight `{name}` has dtype {dtype}; only F32, F16 and BF16 weights are supported")]
    WeightDtype { name: String, dtype: String },
    /// The tokenizer files are missing or malformed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An image could not be decoded or is unacceptable.
    #[error("image `{name}`: {message}")]
    Image { name: String, message: String },
    /// A request exceeds what the device or a documented limit allows.
    #[error("{what} needs {needed}, but only {available} is available")]
    Limits {
        what: String,
        needed: u64,
        available: u64,
    },
    /// A weight holds NaN or an infinity, so every score would be NaN.
    #[error("weight `{0}` holds NaN or an infinite value: the checkpoint is corrupt (download or convert it again)")]
    NonFinite(String),
    /// Memory for something whose size a file chose could not be had.
    #[error("cannot allocate {bytes} bytes for {what}: not enough memory")]
    OutOfMemory { what: String, bytes: u64 },
    /// Bad arguments to an API call.
    #[error("{0}")]
    Invalid(String),
    /// No GPU adapter (WebGPU / Vulkan / Metal / DX12) could be found.
    #[error("no GPU adapter found ({0}); install a GPU driver (e.g. Mesa's lavapipe for Vulkan on the CPU) or use the CPU backend (`--backend cpu`)")]
    NoAdapter(String),
    /// A WGSL shader or its pipeline failed to compile on this device.
    #[error("shader `{label}` does not compile on this GPU: {message}")]
    Shader { label: String, message: String },
    /// A GPU problem (validation, out of memory, lost device).
    #[error("gpu: {0}")]
    Gpu(String),
    /// The caller asked a long computation (an occlusion map) to stop.
    #[error("cancelled")]
    Cancelled,
}

/// An optional hint appended to an error message.
#[derive(Debug, Default, Clone)]
pub struct Hint(pub Option<String>);

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(h) => write!(f, " ({h})"),
            None => Ok(()),
        }
    }
}

/// A zeroed buffer of `n` elements whose size a file or a user chose: `Error::OutOfMemory` instead
/// of aborting the process when the memory cannot be had.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn try_zeroed<T: Clone + Default>(what: &str, n: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::OutOfMemory {
        what: what.to_string(),
        bytes: (n as u64).saturating_mul(std::mem::size_of::<T>() as u64),
    })?;
    v.resize(n, T::default());
    Ok(v)
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn config(file: &str, message: impl Into<String>) -> Self {
        Error::Config {
            file: file.to_string(),
            message: message.into(),
        }
    }
    pub(crate) fn safetensors(file: &str, message: impl Into<String>) -> Self {
        Error::Safetensors {
            file: file.to_string(),
            message: message.into(),
        }
    }
    pub(crate) fn image(name: &str, message: impl Into<String>) -> Self {
        Error::Image {
            name: name.to_string(),
            message: message.into(),
        }
    }
}
