//! Baseline and progressive JPEG decoding that produces the pixels of libjpeg-turbo 3.x as
//! Pillow 11.1.0 and 13.0.0 drive it (`JpegDecode.c`: default `JDCT_ISLOW`,
//! `do_fancy_upsampling`, rawmode `L`, `RGB` or `CMYK;I`), followed by Pillow's `convert("RGB")`.
//!
//! Entropy decoding only has to be correct (any correct decoder yields the same coefficients);
//! the three places where decoders legitimately differ are ported from libjpeg-turbo:
//! - `jidctint.c` `jpeg_idct_islow` (13-bit constants, 2 extra bits in pass 1, range limit),
//! - `jdsample.c` fancy upsampling (triangle filter with alternating rounding bias; edge rows
//!   and columns replicated, as `jdmainct.c` provides its context rows),
//! - `jdcolor.c` YCbCr -> RGB and YCCK -> CMYK (16-bit fixed-point tables),
//!
//! and Pillow's `CMYK;I` unpacking plus `cmyk2rgb` (`Convert.c`) for four-component files.
//! <https://github.com/libjpeg-turbo/libjpeg-turbo/tree/3.1.0/src>
//!
//! Like libjpeg (and so Pillow), data that ends before the image is complete is an error, and an
//! entropy-coded segment that runs into a marker early leaves the rest of its blocks at zero.
//! Not supported (Pillow's libjpeg-turbo reads some of them): 12-bit, lossless, hierarchical and
//! arithmetic-coded JPEGs, files without their own Huffman tables (Motion JPEG), two components.

/// An error message; the caller adds the file name.
pub(crate) type JpegResult<T> = Result<T, String>;

/// Most scans a JPEG may have. Each scan walks every block of its components, so a file of many
/// tiny empty scans costs time out of all proportion to its size (libjpeg-turbo's `-maxscans`
/// guards against the same); real progressive files have about 10, jpegtran's most thorough
/// scripts a few hundred. Pillow has no limit: such files are refused here only.
const MAX_SCANS: usize = 1000;

/// `jpeg_natural_order`: zigzag position -> row-major index.
const NATURAL: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// libjpeg pads its natural-order table with 63s so corrupt run lengths land on the last
/// coefficient instead of out of bounds.
fn natural(k: usize) -> usize {
    NATURAL.get(k).copied().unwrap_or(63)
}

// ---------------------------------------------------------------------------------------------
// Bits and Huffman codes
// ---------------------------------------------------------------------------------------------

/// The entropy-coded bit stream of one scan: undoes `FF 00` stuffing and stops at a marker.
/// Past a marker or the end of the data it supplies zero bits, as libjpeg does, and records
/// whether those were consumed.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64, // MSB-aligned
    n: u32,   // valid bits in `acc`
    pad: u32, // how many of the last `n` bits are padding
    at_marker: bool,
    at_eof: bool,
    /// Padding bits were consumed: the segment ended before its data did.
    starved: bool,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Bits {
            data,
            pos,
            acc: 0,
            n: 0,
            pad: 0,
            at_marker: false,
            at_eof: false,
            starved: false,
        }
    }

    fn next_byte(&mut self) -> Option<u8> {
        if self.at_marker || self.at_eof {
            return None;
        }
        match (self.data.get(self.pos), self.data.get(self.pos + 1)) {
            (None, _) | (Some(0xFF), None) => {
                self.at_eof = true;
                None
            }
            (Some(0xFF), Some(0x00)) => {
                self.pos += 2;
                Some(0xFF)
            }
            (Some(0xFF), Some(_)) => {
                self.at_marker = true;
                None
            }
            (Some(&b), _) => {
                self.pos += 1;
                Some(b)
            }
        }
    }

    fn fill(&mut self) {
        while self.n <= 56 {
            let b = self.next_byte().unwrap_or_else(|| {
                self.pad += 8;
                0
            });
            self.acc |= u64::from(b) << (56 - self.n);
            self.n += 8;
        }
    }

    /// The next `k` (1..=16) bits without consuming them.
    fn peek(&mut self, k: u32) -> u32 {
        if self.n < k {
            self.fill();
        }
        (self.acc >> (64 - k)) as u32
    }

    fn consume(&mut self, k: u32) {
        self.acc <<= k;
        self.n -= k;
        if self.n < self.pad {
            self.starved = true;
            self.pad = self.n;
        }
    }

    fn get(&mut self, k: u32) -> u32 {
        if k == 0 {
            return 0;
        }
        let v = self.peek(k);
        self.consume(k);
        v
    }

    /// `get(s)` sign-extended as a JPEG magnitude category (`HUFF_EXTEND`).
    fn receive_extend(&mut self, s: u32) -> i32 {
        if s == 0 {
            return 0;
        }
        let v = self.get(s) as i32;
        if v < 1 << (s - 1) {
            v - (1 << s) + 1
        } else {
            v
        }
    }

    /// libjpeg's `process_restart`: drop the buffered bits and step over an `RSTn` marker.
    fn restart(&mut self) {
        (self.acc, self.n, self.pad) = (0, 0, 0);
        self.at_marker = false;
        if let (Some(0xFF), Some(0xD0..=0xD7)) =
            (self.data.get(self.pos), self.data.get(self.pos + 1))
        {
            self.pos += 2;
            self.starved = false;
        }
    }
}

/// A canonical Huffman code: 9-bit lookup plus libjpeg's `maxcode` / `valoffset` for longer codes.
#[derive(Clone)]
struct Huffman {
    fast: Vec<u16>, // (512) len << 8 | value, 0 = longer than 9 bits
    maxcode: [i32; 17],
    valoffset: [i32; 17],
    values: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8; 16], values: &[u8]) -> JpegResult<Self> {
        let mut h = Huffman {
            fast: vec![0; 512],
            maxcode: [-1; 17],
            valoffset: [0; 17],
            values: values.to_vec(),
        };
        let (mut code, mut i) = (0i32, 0usize);
        for len in 1..=16 {
            let count = counts[len - 1] as usize;
            h.valoffset[len] = i as i32 - code;
            for _ in 0..count {
                if code >= 1 << len {
                    return Err("corrupt Huffman table (oversubscribed code lengths)".into());
                }
                if len <= 9 {
                    let shift = 9 - len;
                    let first = (code as usize) << shift;
                    let entry = (len as u16) << 8 | u16::from(values[i]);
                    h.fast[first..first + (1 << shift)].fill(entry);
                }
                code += 1;
                i += 1;
            }
            if count > 0 {
                h.maxcode[len] = code - 1;
            }
            code <<= 1;
        }
        Ok(h)
    }

    /// One symbol; a bad code gives 0 after 17 bits, as libjpeg's `jpeg_huff_decode` does.
    fn decode(&self, bits: &mut Bits) -> u8 {
        let peek = bits.peek(16);
        let e = self.fast[(peek >> 7) as usize];
        if e != 0 {
            bits.consume(u32::from(e >> 8));
            return e as u8;
        }
        for len in 10..=16 {
            let code = (peek >> (16 - len)) as i32;
            if code <= self.maxcode[len] {
                bits.consume(len as u32);
                return self.values[(code + self.valoffset[len]) as usize];
            }
        }
        bits.consume(16);
        bits.get(1);
        0
    }
}

// ---------------------------------------------------------------------------------------------
// Frame and markers
// ---------------------------------------------------------------------------------------------

struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// Dequantisation table in natural order, latched at the first scan of this component.
    quant: Option<[u16; 64]>,
    /// Allocated blocks per row and column (whole MCUs).
    bw: usize,
    bh: usize,
    /// Size in samples before upsampling (`downsampled_width` / `_height`).
    dw: usize,
    dh: usize,
    coefs: Vec<i16>, // (bh, bw, 64), natural order, not dequantised
    dc_pred: i32,
}

/// A JPEG whose headers have been read up to the frame header.
pub(crate) struct Jpeg<'a> {
    data: &'a [u8],
    pos: usize,
    width: usize,
    height: usize,
    progressive: bool,
    comps: Vec<Component>,
    hmax: usize,
    vmax: usize,
    qt: [Option<[u16; 64]>; 4],
    dc: [Option<Huffman>; 4],
    ac: [Option<Huffman>; 4],
    restart_interval: usize,
    jfif: bool,
    adobe_transform: Option<u8>,
    scans: usize,
    eobrun: u32,
}

/// Reads a big-endian u16 at `i`.
fn be16(d: &[u8], i: usize) -> JpegResult<usize> {
    match (d.get(i), d.get(i + 1)) {
        (Some(&a), Some(&b)) => Ok(usize::from(a) << 8 | usize::from(b)),
        _ => Err("truncated marker segment".into()),
    }
}

impl<'a> Jpeg<'a> {
    /// Reads the markers up to and including the frame header (SOFn), so the size is known before
    /// any pixel memory is allocated.
    pub(crate) fn read_header(data: &'a [u8]) -> JpegResult<Self> {
        if !data.starts_with(&[0xFF, 0xD8]) {
            return Err("not a JPEG file (no SOI marker)".into());
        }
        let mut j = Jpeg {
            data,
            pos: 2,
            width: 0,
            height: 0,
            progressive: false,
            comps: Vec::new(),
            hmax: 1,
            vmax: 1,
            qt: [None; 4],
            dc: [None, None, None, None],
            ac: [None, None, None, None],
            restart_interval: 0,
            jfif: false,
            adobe_transform: None,
            scans: 0,
            eobrun: 0,
        };
        loop {
            match j.next_marker() {
                None => return Err("the file ends before the frame header (truncated?)".into()),
                Some(m @ (0xC0..=0xC2)) => {
                    let seg = j.segment()?;
                    j.frame(seg, m == 0xC2)?;
                    return Ok(j);
                }
                Some(0xDA) => return Err("scan before the frame header".into()),
                Some(0xD9) => {
                    return Err("no image in the file (EOI before the frame header)".into())
                }
                Some(m) => j.marker(m)?,
            }
        }
    }

    /// (width, height) in pixels.
    pub(crate) fn dimensions(&self) -> (u32, u32) {
        (self.width as u32, self.height as u32)
    }

    /// The next marker code, skipping fill bytes and stray data; `None` at the end of the data.
    fn next_marker(&mut self) -> Option<u8> {
        loop {
            while *self.data.get(self.pos)? != 0xFF {
                self.pos += 1;
            }
            while *self.data.get(self.pos)? == 0xFF {
                self.pos += 1;
            }
            let m = self.data[self.pos];
            self.pos += 1;
            if m != 0 {
                return Some(m);
            }
        }
    }

    /// The payload of the marker segment at `pos` (after its 2-byte length).
    fn segment(&mut self) -> JpegResult<&'a [u8]> {
        let len = be16(self.data, self.pos)?;
        let end = self.pos + len;
        if len < 2 || end > self.data.len() {
            return Err("truncated marker segment".into());
        }
        let seg = &self.data[self.pos + 2..end];
        self.pos = end;
        Ok(seg)
    }

    /// Any marker other than SOF, SOS and EOI.
    fn marker(&mut self, m: u8) -> JpegResult<()> {
        match m {
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                Err("lossless, hierarchical and arithmetic-coded JPEGs are not supported".into())
            }
            0xC0..=0xC2 => Err("more than one frame header".into()),
            0xD0..=0xD7 | 0x01 => Ok(()), // RSTn / TEM outside a scan: no payload
            0xC4 => {
                let seg = self.segment()?;
                self.huffman_tables(seg)
            }
            0xDB => {
                let seg = self.segment()?;
                self.quant_tables(seg)
            }
            0xDD => {
                let seg = self.segment()?;
                self.restart_interval = be16(seg, 0)?;
                Ok(())
            }
            0xE0 => {
                // libjpeg's examine_app0: JFIF needs at least 14 bytes.
                let seg = self.segment()?;
                self.jfif |= seg.len() >= 14 && seg.starts_with(b"JFIF\0");
                Ok(())
            }
            0xEE => {
                // examine_app14: "Adobe" and at least 12 bytes; the transform is byte 11.
                let seg = self.segment()?;
                if seg.len() >= 12 && seg.starts_with(b"Adobe") {
                    self.adobe_transform = Some(seg[11]);
                }
                Ok(())
            }
            _ => self.segment().map(|_| ()),
        }
    }

    fn frame(&mut self, seg: &[u8], progressive: bool) -> JpegResult<()> {
        let precision = *seg.first().ok_or("truncated frame header")?;
        if precision != 8 {
            return Err(format!(
                "{precision}-bit JPEGs are not supported (only 8-bit)"
            ));
        }
        self.height = be16(seg, 1)?;
        self.width = be16(seg, 3)?;
        self.progressive = progressive;
        let n = usize::from(*seg.get(5).ok_or("truncated frame header")?);
        if self.width == 0 || self.height == 0 {
            return Err("zero width or height (DNL markers are not supported)".into());
        }
        if !matches!(n, 1 | 3 | 4) || seg.len() < 6 + 3 * n {
            return Err(format!(
                "{n} colour components are not supported (1, 3 or 4)"
            ));
        }
        for c in seg[6..6 + 3 * n].chunks_exact(3) {
            let (h, v, tq) = (
                usize::from(c[1] >> 4),
                usize::from(c[1] & 15),
                usize::from(c[2]),
            );
            if !(1..=4).contains(&h) || !(1..=4).contains(&v) || tq > 3 {
                return Err("bad sampling factors or quantisation table index".into());
            }
            self.comps.push(Component {
                id: c[0],
                h,
                v,
                tq,
                quant: None,
                bw: 0,
                bh: 0,
                dw: 0,
                dh: 0,
                coefs: Vec::new(),
                dc_pred: 0,
            });
        }
        self.hmax = self.comps.iter().map(|c| c.h).max().unwrap_or(1);
        self.vmax = self.comps.iter().map(|c| c.v).max().unwrap_or(1);
        if self
            .comps
            .iter()
            .any(|c| !self.hmax.is_multiple_of(c.h) || !self.vmax.is_multiple_of(c.v))
        {
            // libjpeg: JERR_FRACT_SAMPLE_NOTIMPL
            return Err("fractional chroma sampling ratios are not supported".into());
        }
        let mcux = self.width.div_ceil(8 * self.hmax);
        let mcuy = self.height.div_ceil(8 * self.vmax);
        for c in &mut self.comps {
            (c.bw, c.bh) = (mcux * c.h, mcuy * c.v);
            c.dw = (self.width * c.h).div_ceil(self.hmax);
            c.dh = (self.height * c.v).div_ceil(self.vmax);
        }
        Ok(())
    }

    fn quant_tables(&mut self, mut seg: &[u8]) -> JpegResult<()> {
        while let Some(&pq_tq) = seg.first() {
            let (sixteen, id) = (pq_tq >> 4 != 0, usize::from(pq_tq & 15));
            let size = if sixteen { 128 } else { 64 };
            if id > 3 || seg.len() < 1 + size {
                return Err("corrupt quantisation table".into());
            }
            let mut t = [0u16; 64];
            for (k, &pos) in NATURAL.iter().enumerate() {
                t[pos] = if sixteen {
                    u16::from_be_bytes([seg[1 + 2 * k], seg[2 + 2 * k]])
                } else {
                    u16::from(seg[1 + k])
                };
            }
            self.qt[id] = Some(t);
            seg = &seg[1 + size..];
        }
        Ok(())
    }

    fn huffman_tables(&mut self, mut seg: &[u8]) -> JpegResult<()> {
        while seg.len() >= 17 {
            let (class, id) = (seg[0] >> 4, usize::from(seg[0] & 15));
            let counts: [u8; 16] = seg[1..17].try_into().map_err(|_| "corrupt Huffman table")?;
            let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
            if class > 1 || id > 3 || total > 256 || seg.len() < 17 + total {
                return Err("corrupt Huffman table".into());
            }
            let table = Some(Huffman::new(&counts, &seg[17..17 + total])?);
            if class == 0 {
                self.dc[id] = table;
            } else {
                self.ac[id] = table;
            }
            seg = &seg[17 + total..];
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Scans
    // -----------------------------------------------------------------------------------------

    /// Decodes the whole file to (H, W, 3) RGB.
    pub(crate) fn decode_rgb(mut self) -> JpegResult<Vec<u8>> {
        for c in &mut self.comps {
            c.coefs = vec![0; c.bw * c.bh * 64];
        }
        loop {
            match self.next_marker() {
                // Pillow reports a file without EOI as truncated, even when its scans are whole.
                None => return Err("the file ends before the EOI marker (truncated?)".into()),
                Some(0xD9) => break,
                Some(0xDA) => self.scan()?,
                Some(m) => self.marker(m)?,
            }
        }
        if self.scans == 0 {
            return Err("no image data (no scan)".into());
        }
        let planes: Vec<Vec<u8>> = self.comps.iter().map(|c| self.upsampled(c)).collect();
        Ok(self.color_convert(&planes))
    }

    fn scan(&mut self) -> JpegResult<()> {
        let seg = self.segment()?;
        let n = usize::from(*seg.first().ok_or("truncated scan header")?);
        if n == 0 || n > 4 || seg.len() < 4 + 2 * n {
            return Err("corrupt scan header".into());
        }
        let mut members = Vec::with_capacity(n); // (component index, dc table, ac table)
        for s in seg[1..1 + 2 * n].chunks_exact(2) {
            let ci = self
                .comps
                .iter()
                .position(|c| c.id == s[0])
                .ok_or("scan names an unknown component")?;
            members.push((ci, usize::from(s[1] >> 4 & 3), usize::from(s[1] & 3)));
        }
        let p = &seg[1 + 2 * n..];
        let (ss, se, ah, al) = (usize::from(p[0]), usize::from(p[1]), p[2] >> 4, p[2] & 15);
        if !self.progressive && (ss != 0 || se != 63 || ah != 0 || al != 0)
            || self.progressive
                && (se > 63 || ss > se || (ss == 0) != (se == 0) || ss > 0 && n != 1)
        {
            return Err("bad scan parameters".into());
        }
        for &(ci, _, _) in &members {
            let c = &mut self.comps[ci];
            if c.quant.is_none() {
                c.quant = Some(self.qt[c.tq].ok_or("missing quantisation table")?);
            }
            c.dc_pred = 0;
        }
        self.scans += 1;
        if self.scans > MAX_SCANS {
            return Err(format!(
                "more than {MAX_SCANS} scans (a decompression bomb, or a broken encoder)"
            ));
        }
        self.eobrun = 0;
        let kind = match (self.progressive, ss == 0, ah == 0) {
            (false, _, _) => ScanKind::Sequential,
            (true, true, true) => ScanKind::DcFirst(al),
            (true, true, false) => ScanKind::DcRefine(al),
            (true, false, true) => ScanKind::AcFirst((ss, se, al)),
            (true, false, false) => ScanKind::AcRefine((ss, se, al)),
        };
        self.decode_scan(&members, kind)
    }

    fn decode_scan(&mut self, members: &[(usize, usize, usize)], kind: ScanKind) -> JpegResult<()> {
        let tables =
            |i: usize, t: &[Option<Huffman>; 4], need: bool| -> JpegResult<Option<Huffman>> {
                match (&t[i], need) {
                    (Some(h), true) => Ok(Some(h.clone())),
                    (None, true) => Err("missing Huffman table".to_string()),
                    (_, false) => Ok(None),
                }
            };
        let needs_dc = matches!(kind, ScanKind::Sequential | ScanKind::DcFirst(_));
        let needs_ac = matches!(
            kind,
            ScanKind::Sequential | ScanKind::AcFirst(..) | ScanKind::AcRefine(..)
        );
        let mut codes = Vec::with_capacity(members.len());
        for &(ci, td, ta) in members {
            codes.push((
                ci,
                tables(td, &self.dc, needs_dc)?,
                tables(ta, &self.ac, needs_ac)?,
            ));
        }
        // Units: MCUs of an interleaved scan, or the component's own blocks of a single one.
        let (ux, uy) = if members.len() == 1 {
            let c = &self.comps[members[0].0];
            (c.dw.div_ceil(8), c.dh.div_ceil(8))
        } else {
            (
                self.width.div_ceil(8 * self.hmax),
                self.height.div_ceil(8 * self.vmax),
            )
        };
        let mut bits = Bits::new(self.data, self.pos);
        for unit in 0..ux * uy {
            if self.restart_interval > 0 && unit > 0 && unit % self.restart_interval == 0 {
                bits.restart();
                self.eobrun = 0;
                for &(ci, _, _) in members {
                    self.comps[ci].dc_pred = 0;
                }
            }
            // After running into a marker libjpeg leaves the remaining blocks empty.
            if bits.starved {
                continue;
            }
            let (mx, my) = (unit % ux, unit / ux);
            for (ci, dc, ac) in &codes {
                let (h, v) = if members.len() == 1 {
                    (1, 1)
                } else {
                    (self.comps[*ci].h, self.comps[*ci].v)
                };
                for by in my * v..my * v + v {
                    for bx in mx * h..mx * h + h {
                        self.decode_block(*ci, by, bx, dc.as_ref(), ac.as_ref(), kind, &mut bits);
                    }
                }
            }
            if bits.starved && bits.at_eof && !bits.at_marker {
                return Err("the JPEG data ends early (truncated file?)".into());
            }
        }
        self.pos = bits.pos;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn decode_block(
        &mut self,
        ci: usize,
        by: usize,
        bx: usize,
        dc: Option<&Huffman>,
        ac: Option<&Huffman>,
        kind: ScanKind,
        bits: &mut Bits,
    ) {
        let c = &mut self.comps[ci];
        let i = (by * c.bw + bx) * 64;
        let blk: &mut [i16; 64] = (&mut c.coefs[i..i + 64])
            .try_into()
            .expect("64 coefficients");
        match (kind, dc, ac) {
            (ScanKind::Sequential, Some(dc), Some(ac)) => {
                decode_dc_first(bits, dc, &mut c.dc_pred, blk, 0);
                decode_ac_sequential(bits, ac, blk);
            }
            (ScanKind::DcFirst(al), Some(dc), _) => {
                decode_dc_first(bits, dc, &mut c.dc_pred, blk, al)
            }
            (ScanKind::DcRefine(al), _, _) => blk[0] |= (bits.get(1) as i16) << al,
            (ScanKind::AcFirst(band), _, Some(ac)) => {
                decode_ac_first(bits, ac, blk, band, &mut self.eobrun)
            }
            (ScanKind::AcRefine(band), _, Some(ac)) => {
                decode_ac_refine(bits, ac, blk, band, &mut self.eobrun)
            }
            _ => {}
        }
    }
}

#[derive(Clone, Copy)]
enum ScanKind {
    Sequential,
    DcFirst(u8),
    DcRefine(u8),
    /// (ss, se, al)
    AcFirst((usize, usize, u8)),
    AcRefine((usize, usize, u8)),
}

fn decode_dc_first(bits: &mut Bits, dc: &Huffman, pred: &mut i32, blk: &mut [i16; 64], al: u8) {
    let s = u32::from(dc.decode(bits)).min(16);
    *pred = pred.wrapping_add(bits.receive_extend(s));
    blk[0] = (*pred << al) as i16;
}

/// AC coefficients of a sequential block (`jdhuff.c` `decode_mcu_slow`).
fn decode_ac_sequential(bits: &mut Bits, ac: &Huffman, blk: &mut [i16; 64]) {
    let mut k = 1;
    while k < 64 {
        let rs = ac.decode(bits);
        let (r, s) = (usize::from(rs >> 4), u32::from(rs & 15));
        if s != 0 {
            k += r;
            blk[natural(k)] = bits.receive_extend(s) as i16;
        } else if r != 15 {
            break;
        } else {
            k += 15;
        }
        k += 1;
    }
}

/// `jdphuff.c` `decode_mcu_AC_first`: coefficients `ss..=se`, scaled by `2^al`, with
/// end-of-band runs across blocks.
fn decode_ac_first(
    bits: &mut Bits,
    ac: &Huffman,
    blk: &mut [i16; 64],
    (ss, se, al): (usize, usize, u8),
    eobrun: &mut u32,
) {
    if *eobrun > 0 {
        *eobrun -= 1;
        return;
    }
    let mut k = ss;
    while k <= se {
        let rs = ac.decode(bits);
        let (r, s) = (usize::from(rs >> 4), u32::from(rs & 15));
        if s != 0 {
            k += r;
            blk[natural(k)] = (bits.receive_extend(s) << al) as i16;
        } else if r == 15 {
            k += 15;
        } else {
            *eobrun = (1 << r) + bits.get(r as u32) - 1;
            break;
        }
        k += 1;
    }
}

/// `jdphuff.c` `decode_mcu_AC_refine`.
fn decode_ac_refine(
    bits: &mut Bits,
    ac: &Huffman,
    blk: &mut [i16; 64],
    (ss, se, al): (usize, usize, u8),
    eobrun: &mut u32,
) {
    let p1: i16 = 1 << al;
    let m1: i16 = -1 << al;
    let refine = |bits: &mut Bits, coef: &mut i16| {
        if bits.get(1) != 0 && *coef & p1 == 0 {
            *coef = coef.wrapping_add(if *coef >= 0 { p1 } else { m1 });
        }
    };
    let mut k = ss;
    if *eobrun == 0 {
        while k <= se {
            let rs = ac.decode(bits);
            let (mut r, s) = (i32::from(rs >> 4), rs & 15);
            let mut value = 0i16;
            if s != 0 {
                value = if bits.get(1) != 0 { p1 } else { m1 };
            } else if r != 15 {
                *eobrun = (1 << r) + bits.get(r as u32);
                break;
            }
            while k <= se {
                let coef = &mut blk[natural(k)];
                if *coef != 0 {
                    refine(bits, coef);
                } else {
                    r -= 1;
                    if r < 0 {
                        break;
                    }
                }
                k += 1;
            }
            if value != 0 {
                blk[natural(k)] = value;
            }
            k += 1;
        }
    }
    if *eobrun > 0 {
        while k <= se {
            let coef = &mut blk[natural(k)];
            if *coef != 0 {
                refine(bits, coef);
            }
            k += 1;
        }
        *eobrun -= 1;
    }
}

// ---------------------------------------------------------------------------------------------
// IDCT, upsampling, colour conversion
// ---------------------------------------------------------------------------------------------

/// libjpeg's post-IDCT range limit: `range_limit[x & 1023]` with x centred on 0, which clamps to
/// 0..=255 for |x| < 512 and wraps beyond (corrupt data only).
fn idct_range_limit(x: i64) -> u8 {
    let m = (x & 1023) as i32;
    match m {
        0..=127 => (m + 128) as u8,
        128..=511 => 255,
        512..=895 => 0,
        _ => (m - 896) as u8,
    }
}

/// `jidctint.c` `jpeg_idct_islow`: dequantise and inverse-DCT one block into `out` (8 rows of
/// `stride`).
fn idct_islow(coefs: &[i16], quant: &[u16; 64], out: &mut [u8], stride: usize) {
    const CONST_BITS: u32 = 13;
    const PASS1_BITS: u32 = 2;
    let descale = |x: i64, n: u32| (x + (1 << (n - 1))) >> n;
    let mut ws = [0i32; 64];
    for col in 0..8 {
        let z = |r: usize| {
            i64::from(i32::from(coefs[r * 8 + col]).wrapping_mul(i32::from(quant[r * 8 + col])))
        };
        if (1..8).all(|r| coefs[r * 8 + col] == 0) {
            let dc = (z(0) << PASS1_BITS) as i32;
            (0..8).for_each(|r| ws[r * 8 + col] = dc);
            continue;
        }
        let o = idct_1d(std::array::from_fn(z), CONST_BITS);
        for r in 0..8 {
            ws[r * 8 + col] = descale(o[r], CONST_BITS - PASS1_BITS) as i32;
        }
    }
    for row in 0..8 {
        let w = &ws[row * 8..row * 8 + 8];
        let dst = &mut out[row * stride..row * stride + 8];
        if w[1..].iter().all(|&x| x == 0) {
            dst.fill(idct_range_limit(descale(i64::from(w[0]), PASS1_BITS + 3)));
            continue;
        }
        let o = idct_1d(std::array::from_fn(|k| i64::from(w[k])), CONST_BITS);
        for (d, &x) in dst.iter_mut().zip(&o) {
            *d = idct_range_limit(descale(x, CONST_BITS + PASS1_BITS + 3));
        }
    }
}

/// The even/odd butterfly shared by both IDCT passes, before descaling. Inputs in natural
/// order; output i is `tmp1x ± tmp_y` as in `jidctint.c`.
fn idct_1d(i: [i64; 8], const_bits: u32) -> [i64; 8] {
    // FIX(x) = round(x * 2^13)
    const F0_298: i64 = 2446;
    const F0_390: i64 = 3196;
    const F0_541: i64 = 4433;
    const F0_765: i64 = 6270;
    const F0_899: i64 = 7373;
    const F1_175: i64 = 9633;
    const F1_501: i64 = 12299;
    const F1_847: i64 = 15137;
    const F1_961: i64 = 16069;
    const F2_053: i64 = 16819;
    const F2_562: i64 = 20995;
    const F3_072: i64 = 25172;
    // Even part.
    let z1 = (i[2] + i[6]) * F0_541;
    let tmp2 = z1 + i[6] * -F1_847;
    let tmp3 = z1 + i[2] * F0_765;
    let tmp0 = (i[0] + i[4]) << const_bits;
    let tmp1 = (i[0] - i[4]) << const_bits;
    let (t10, t13, t11, t12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);
    // Odd part.
    let (t0, t1, t2, t3) = (i[7], i[5], i[3], i[1]);
    let (z1, z2, z3, z4) = (t0 + t3, t1 + t2, t0 + t2, t1 + t3);
    let z5 = (z3 + z4) * F1_175;
    let (t0, t1, t2, t3) = (t0 * F0_298, t1 * F2_053, t2 * F3_072, t3 * F1_501);
    let (z1, z2) = (z1 * -F0_899, z2 * -F2_562);
    let (z3, z4) = (z3 * -F1_961 + z5, z4 * -F0_390 + z5);
    let (t0, t1, t2, t3) = (t0 + z1 + z3, t1 + z2 + z4, t2 + z2 + z3, t3 + z1 + z4);
    [
        t10 + t3,
        t11 + t2,
        t12 + t1,
        t13 + t0,
        t13 - t0,
        t12 - t1,
        t11 - t2,
        t10 - t3,
    ]
}

impl Jpeg<'_> {
    /// One component's IDCT plane (bh*8, bw*8) u8.
    fn idct_plane(&self, c: &Component) -> Vec<u8> {
        let stride = c.bw * 8;
        let mut plane = vec![0u8; stride * c.bh * 8];
        let quant = c.quant.unwrap_or(self.qt[c.tq].unwrap_or([0; 64]));
        for by in 0..c.bh {
            for bx in 0..c.bw {
                let i = (by * c.bw + bx) * 64;
                let at = by * 8 * stride + bx * 8;
                idct_islow(&c.coefs[i..i + 64], &quant, &mut plane[at..], stride);
            }
        }
        plane
    }

    /// One component at full resolution, (H, W) u8, by `jdsample.c`'s method for its sampling.
    fn upsampled(&self, c: &Component) -> Vec<u8> {
        let plane = self.idct_plane(c);
        let stride = c.bw * 8;
        let (w, h) = (self.width, self.height);
        // Real samples only: edge rows / columns replicated beyond the component's own size.
        let at = |y: usize, x: usize| i32::from(plane[y.min(c.dh - 1) * stride + x.min(c.dw - 1)]);
        let (hx, vx) = (self.hmax / c.h, self.vmax / c.v); // integral: checked in `frame`
        let fancy_w = c.dw > 2; // jdsample.c only filters horizontally past two samples
        let mut out = vec![0u8; w * h];
        for y in 0..h {
            let row = &mut out[y * w..(y + 1) * w];
            let (iy, below) = (y / vx, y % 2 == 1);
            // The next-nearest input row for vertical triangle filtering.
            let ny = if below { iy + 1 } else { iy.saturating_sub(1) };
            match (hx, vx) {
                (1, 1) => row
                    .iter_mut()
                    .enumerate()
                    .for_each(|(x, o)| *o = at(y, x) as u8),
                (2, 1) if fancy_w => h2v1_fancy(row, |x| at(y, x), c.dw),
                (1, 2) => {
                    let bias = if below { 2 } else { 1 };
                    row.iter_mut()
                        .enumerate()
                        .for_each(|(x, o)| *o = ((at(iy, x) * 3 + at(ny, x) + bias) >> 2) as u8);
                }
                (2, 2) if fancy_w => h2v2_fancy(row, |x| at(iy, x) * 3 + at(ny, x), c.dw),
                _ => row
                    .iter_mut()
                    .enumerate()
                    .for_each(|(x, o)| *o = at(y / vx, x / hx) as u8),
            }
        }
        out
    }

    /// Upsampled component planes -> (H, W, 3) RGB, as libjpeg's colour deconverter and then
    /// Pillow's mode conversion do.
    fn color_convert(&self, planes: &[Vec<u8>]) -> Vec<u8> {
        let n = self.width * self.height;
        let mut rgb = Vec::with_capacity(n * 3);
        let ycc = YccTables::new();
        match planes.len() {
            1 => (0..n).for_each(|i| rgb.extend([planes[0][i]; 3])), // L -> RGB
            3 if self.is_rgb() => {
                (0..n).for_each(|i| rgb.extend([planes[0][i], planes[1][i], planes[2][i]]))
            }
            3 => (0..n).for_each(|i| rgb.extend(ycc.rgb(planes[0][i], planes[1][i], planes[2][i]))),
            _ => {
                let ycck = self.adobe_transform.is_some_and(|t| t != 0);
                let pixels = planes[0]
                    .iter()
                    .zip(&planes[1])
                    .zip(&planes[2])
                    .zip(&planes[3]);
                for (((&a, &b), &c), &k) in pixels {
                    let cmy = if ycck {
                        ycc.rgb(a, b, c).map(|v| 255 - v)
                    } else {
                        [a, b, c]
                    };
                    rgb.extend(pil_cmyk_inverted_to_rgb(cmy, k));
                }
            }
        }
        rgb
    }

    /// libjpeg's guess of a 3-component file's colour space (`jdapimin.c`).
    fn is_rgb(&self) -> bool {
        if self.jfif {
            return false;
        }
        if let Some(t) = self.adobe_transform {
            return t == 0;
        }
        let ids: Vec<u8> = self.comps.iter().map(|c| c.id).collect();
        ids == [82, 71, 66] // 'R', 'G', 'B'
    }
}

/// `h2v1_fancy_upsample` for one row of `dw` input samples (`dw > 2`).
fn h2v1_fancy(out: &mut [u8], at: impl Fn(usize) -> i32, dw: usize) {
    let mut put = |x: usize, v: i32| {
        if let Some(o) = out.get_mut(x) {
            *o = v as u8;
        }
    };
    put(0, at(0));
    put(1, (at(0) * 3 + at(1) + 2) >> 2);
    for i in 1..dw - 1 {
        let v = at(i) * 3;
        put(2 * i, (v + at(i - 1) + 1) >> 2);
        put(2 * i + 1, (v + at(i + 1) + 2) >> 2);
    }
    put(2 * dw - 2, (at(dw - 1) * 3 + at(dw - 2) + 1) >> 2);
    put(2 * dw - 1, at(dw - 1));
}

/// `h2v2_fancy_upsample` for one output row; `colsum(i)` = 3 * nearer row + further row.
fn h2v2_fancy(out: &mut [u8], colsum: impl Fn(usize) -> i32, dw: usize) {
    let mut put = |x: usize, v: i32| {
        if let Some(o) = out.get_mut(x) {
            *o = (v >> 4) as u8;
        }
    };
    put(0, colsum(0) * 4 + 8);
    put(1, colsum(0) * 3 + colsum(1) + 7);
    for i in 1..dw - 1 {
        put(2 * i, colsum(i) * 3 + colsum(i - 1) + 8);
        put(2 * i + 1, colsum(i) * 3 + colsum(i + 1) + 7);
    }
    put(2 * dw - 2, colsum(dw - 1) * 3 + colsum(dw - 2) + 8);
    put(2 * dw - 1, colsum(dw - 1) * 4 + 7);
}

/// `jdcolor.c` `build_ycc_rgb_table`: 16-bit fixed point, `FIX(x) = round(x * 2^16)`.
struct YccTables {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i64; 256],
    cb_g: [i64; 256],
}

impl YccTables {
    fn new() -> Self {
        const SCALEBITS: u32 = 16;
        const ONE_HALF: i64 = 1 << (SCALEBITS - 1);
        let fix = |x: f64| (x * f64::from(1u32 << SCALEBITS) + 0.5) as i64;
        let mut t = YccTables {
            cr_r: [0; 256],
            cb_b: [0; 256],
            cr_g: [0; 256],
            cb_g: [0; 256],
        };
        for i in 0..256 {
            let x = i as i64 - 128;
            t.cr_r[i] = ((fix(1.40200) * x + ONE_HALF) >> SCALEBITS) as i32;
            t.cb_b[i] = ((fix(1.77200) * x + ONE_HALF) >> SCALEBITS) as i32;
            t.cr_g[i] = -fix(0.71414) * x;
            t.cb_g[i] = -fix(0.34414) * x + ONE_HALF;
        }
        t
    }

    /// `ycc_rgb_convert` for one pixel.
    fn rgb(&self, y: u8, cb: u8, cr: u8) -> [u8; 3] {
        let (y, cb, cr) = (i32::from(y), usize::from(cb), usize::from(cr));
        let g = ((self.cb_g[cb] + self.cr_g[cr]) >> 16) as i32;
        [y + self.cr_r[cr], y + g, y + self.cb_b[cb]].map(|v| v.clamp(0, 255) as u8)
    }
}

/// Pillow's `CMYK;I` unpacking (Adobe files store inverted CMYK) followed by `cmyk2rgb`
/// (`Convert.c`): `nk - nk * c / 255` with its `MULDIV255` rounding.
fn pil_cmyk_inverted_to_rgb(stored_cmy: [u8; 3], stored_k: u8) -> [u8; 3] {
    let nk = i32::from(stored_k); // 255 - (255 - stored k)
    let muldiv255 = |a: i32, b: i32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    stored_cmy.map(|s| (nk - muldiv255(255 - i32::from(s), nk)).clamp(0, 255) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An 8x8 progressive grayscale JPEG: one DC scan, then `refines` DC refinement scans.
    fn progressive_gray(refines: usize) -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        j.extend([0xFF, 0xDB, 0x00, 0x43, 0x00]); // DQT 0: all ones
        j.extend([1u8; 64]);
        j.extend([0xFF, 0xC2, 0x00, 0x0B, 8, 0, 8, 0, 8, 1, 1, 0x11, 0]); // SOF2 8x8, 1 comp
        j.extend([0xFF, 0xC4, 0x00, 0x14, 0x00, 1]); // DHT DC 0: one 1-bit code,
        j.extend([0u8; 15]); // ... no longer ones,
        j.push(0); // ... for category 0
        let sos = |ah_al: u8| [0xFF, 0xDA, 0x00, 0x08, 1, 1, 0x00, 0, 0, ah_al];
        j.extend(sos(0x00));
        j.push(0x00); // code 0: DC difference 0
        for _ in 0..refines {
            j.extend(sos(0x10));
            j.push(0x00); // one correction bit, 0
        }
        j.extend([0xFF, 0xD9]);
        j
    }

    #[test]
    fn scans_are_capped() {
        let (ok, bomb) = (progressive_gray(10), progressive_gray(MAX_SCANS));
        let rgb = Jpeg::read_header(&ok).unwrap().decode_rgb().unwrap();
        assert_eq!(rgb.len(), 8 * 8 * 3);
        let e = Jpeg::read_header(&bomb).unwrap().decode_rgb().unwrap_err();
        assert!(e.contains("more than 1000 scans"), "{e}");
    }
}
