//! The one error type of the library. Every message says what went wrong and, where it helps,
//! what to do next; nothing a user controls panics.

use std::fmt;

/// Everything that can go wrong while loading a model or scoring.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A file of the model folder could not be found.
    #[error("missing file `{}` in the model folder{hint}", shown(.name))]
    MissingFile { name: String, hint: Hint },
    /// An I/O error while reading a file.
    #[error("cannot read `{}`: {}", shown(.name), shown(.message))]
    Io { name: String, message: String },
    /// An I/O error while writing an output (a full disk, a lost network filesystem): worth a
    /// retry, unlike a bad input.
    #[error("cannot write `{}`: {}", shown(.name), shown(.message))]
    Output { name: String, message: String },
    /// A configuration file is malformed or names something unsupported.
    #[error("bad config `{}`: {}", shown(.file), shown(.message))]
    Config { file: String, message: String },
    /// A safetensors file is corrupt or truncated.
    #[error("bad safetensors file `{}`: {}", shown(.file), shown(.message))]
    Safetensors { file: String, message: String },
    /// A weight the model needs is not in the checkpoint.
    #[error("missing weight `{}` in the checkpoint (is this a Hugging Face CLIPModel?)", shown(.0))]
    MissingWeight(String),
    /// A weight has a different shape than the config implies.
    #[error("weight `{}` has shape {got:?}, but config.json implies {expected:?}", shown(.name))]
    WeightShape {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// A weight is stored in a dtype we cannot convert.
    #[error("weight `{}` has dtype {}; only F32, F16 and BF16 weights are supported", shown(.name), shown(.dtype))]
    WeightDtype { name: String, dtype: String },
    /// The tokenizer files are missing or malformed.
    #[error("tokenizer: {}", shown(.0))]
    Tokenizer(String),
    /// An image could not be decoded or is unacceptable.
    #[error("image `{}`: {}", shown(.name), shown(.message))]
    Image { name: String, message: String },
    /// A request exceeds what the device or a documented limit allows.
    #[error("{} needs {needed}, but only {available} is available", shown(.what))]
    Limits {
        what: String,
        needed: u64,
        available: u64,
    },
    /// A weight holds NaN or an infinity, so every score would be NaN.
    #[error("weight `{}` holds NaN or an infinite value: the checkpoint is corrupt (download or convert it again)", shown(.0))]
    NonFinite(String),
    /// Memory for something whose size a file chose could not be had.
    #[error("cannot allocate {bytes} bytes for {}: not enough memory", shown(.what))]
    OutOfMemory { what: String, bytes: u64 },
    /// Bad arguments to an API call.
    #[error("{}", shown(.0))]
    Invalid(String),
    /// No GPU adapter (WebGPU / Vulkan / Metal / DX12) could be found.
    #[error("no GPU adapter found ({}); install a GPU driver (e.g. Mesa's lavapipe for Vulkan on the CPU) or use the CPU backend (`--backend cpu`)", shown(.0))]
    NoAdapter(String),
    /// A WGSL shader or its pipeline failed to compile on this device.
    #[error("shader `{}` does not compile on this GPU: {}", shown(.label), shown(.message))]
    Shader { label: String, message: String },
    /// A GPU problem (validation, out of memory, lost device).
    #[error("gpu: {}", shown(.0))]
    Gpu(String),
    /// Stopped by signal `{0}` (SIGTERM 15, SIGINT 2) after writing what was done.
    #[error("interrupted by signal {0}; run the same command again to resume")]
    Interrupted(i32),
    /// The caller asked a long computation (an occlusion map) to stop.
    #[error("cancelled")]
    Cancelled,
}

/// Text a file or a user chose (names, paths, strings from JSON), or a message that quotes it,
/// made safe to print: control characters, line breaks and terminal escape sequences among them,
/// are shown escaped (`\n`, `\u{1b}`), so every error message is one line and cannot drive a
/// terminal. Every message of [`Error`] goes through it.
pub fn shown(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// An optional hint appended to an error message.
#[derive(Debug, Default, Clone)]
pub struct Hint(pub Option<String>);

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(h) => write!(f, " ({})", shown(h)),
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
    /// Whether running the same command again may succeed: the device was lost or is missing
    /// on this machine, an output could not be written, or the run was interrupted. Bad inputs (model folder, manifest,
    /// arguments) fail the same way every time. The CLI's exit codes follow this (75 or 1).
    pub fn retryable(&self) -> bool {
        match self {
            Error::Gpu(_)
            | Error::NoAdapter(_)
            | Error::Output { .. }
            | Error::Interrupted(_)
            | Error::Cancelled => true,
            Error::MissingFile { .. }
            | Error::Io { .. }
            | Error::Config { .. }
            | Error::Safetensors { .. }
            | Error::MissingWeight(_)
            | Error::WeightShape { .. }
            | Error::WeightDtype { .. }
            | Error::Tokenizer(_)
            | Error::Image { .. }
            | Error::Limits { .. }
            | Error::NonFinite(_)
            | Error::OutOfMemory { .. }
            | Error::Invalid(_)
            | Error::Shader { .. } => false,
        }
    }

    /// Whether the error is one image's own (it cannot be decoded, it has too many pixels, or
    /// the engine refused it), so that scoring the others can go on without it.
    pub fn is_image_fault(&self) -> bool {
        matches!(self, Error::Image { .. } | Error::Limits { .. })
    }

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
