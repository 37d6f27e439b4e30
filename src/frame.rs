//! Raw video frame description: pixel formats and plane layouts, with no GStreamer
//! dependency. The layouts mirror GStreamer's `VideoInfo` so that a mapped buffer can
//! be described either by [`FrameLayout::packed`] (GStreamer's default layout) or by
//! copying the offsets and strides of a `VideoFrame`/`VideoMeta`.

use crate::{Error, Result};

/// The pixel formats the engine reads and writes; names are GStreamer's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    Rgb,
    Bgr,
    Rgbx,
    Bgrx,
    Xrgb,
    Xbgr,
    Rgba,
    Bgra,
    Argb,
    Abgr,
    I420,
    Nv12,
}

impl PixelFormat {
    /// Every supported format, packed RGB family first, then YUV.
    pub const ALL: &'static [PixelFormat] = &[
        PixelFormat::Rgb,
        PixelFormat::Bgr,
        PixelFormat::Rgbx,
        PixelFormat::Bgrx,
        PixelFormat::Xrgb,
        PixelFormat::Xbgr,
        PixelFormat::Rgba,
        PixelFormat::Bgra,
        PixelFormat::Argb,
        PixelFormat::Abgr,
        PixelFormat::I420,
        PixelFormat::Nv12,
    ];

    /// The GStreamer format string (`video/x-raw, format=...`).
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Rgb => "RGB",
            PixelFormat::Bgr => "BGR",
            PixelFormat::Rgbx => "RGBx",
            PixelFormat::Bgrx => "BGRx",
            PixelFormat::Xrgb => "xRGB",
            PixelFormat::Xbgr => "xBGR",
            PixelFormat::Rgba => "RGBA",
            PixelFormat::Bgra => "BGRA",
            PixelFormat::Argb => "ARGB",
            PixelFormat::Abgr => "ABGR",
            PixelFormat::I420 => "I420",
            PixelFormat::Nv12 => "NV12",
        }
    }

    /// Parses a GStreamer format string (case-sensitive, as in caps).
    pub fn from_name(name: &str) -> Option<Self> {
        PixelFormat::ALL.iter().copied().find(|f| f.name() == name)
    }

    /// True for the planar YUV 4:2:0 formats (I420, NV12).
    pub fn is_yuv(self) -> bool {
        matches!(self, PixelFormat::I420 | PixelFormat::Nv12)
    }

    /// True for the packed formats carrying an alpha byte (RGBA, BGRA, ARGB, ABGR).
    pub fn has_alpha(self) -> bool {
        matches!(
            self,
            PixelFormat::Rgba | PixelFormat::Bgra | PixelFormat::Argb | PixelFormat::Abgr
        )
    }

    /// Bytes per pixel of the packed RGB-family formats; `None` for YUV.
    pub fn bytes_per_pixel(self) -> Option<usize> {
        match self {
            PixelFormat::Rgb | PixelFormat::Bgr => Some(3),
            PixelFormat::I420 | PixelFormat::Nv12 => None,
            _ => Some(4),
        }
    }

    /// Number of planes: 1 for packed RGB, 3 for I420, 2 for NV12.
    pub fn n_planes(self) -> usize {
        match self {
            PixelFormat::I420 => 3,
            PixelFormat::Nv12 => 2,
            _ => 1,
        }
    }
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// YUV to RGB matrix (colorimetry) of the YUV formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum YuvMatrix {
    #[default]
    Bt601,
    Bt709,
}

/// Where each plane of one frame lies in a byte buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    /// Byte offset of each plane; unused planes 0.
    pub offsets: [usize; 3],
    /// Bytes per row of each plane; unused planes 0.
    pub strides: [usize; 3],
    /// Total bytes of a frame.
    pub size: usize,
    /// YUV formats only: the matrix.
    pub matrix: YuvMatrix,
    /// YUV formats only: full (0..255) rather than limited (16..235/240) range.
    pub full_range: bool,
}

fn round_up_4(v: usize) -> usize {
    v.div_ceil(4) * 4
}

impl FrameLayout {
    /// GStreamer's default layout of a `width`×`height` frame of `format` (as made
    /// by `gst_video_info_set_format`): every stride rounded up to a multiple of
    /// 4 bytes; I420 chroma planes (w+1)/2 × (h+1)/2; NV12 one interleaved UV plane
    /// with the luma stride; YUV planes after the luma plane start at
    /// `stride0 * round_up_2(height)`. YUV formats get limited-range BT.601.
    pub fn packed(format: PixelFormat, width: usize, height: usize) -> FrameLayout {
        let mut offsets = [0; 3];
        let mut strides = [0; 3];
        let size;
        let luma_rows = height.div_ceil(2) * 2;
        let chroma_rows = height.div_ceil(2);
        match format {
            PixelFormat::I420 => {
                strides[0] = round_up_4(width);
                strides[1] = round_up_4(width.div_ceil(2));
                strides[2] = strides[1];
                offsets[1] = strides[0] * luma_rows;
                offsets[2] = offsets[1] + strides[1] * chroma_rows;
                size = offsets[2] + strides[2] * chroma_rows;
            }
            PixelFormat::Nv12 => {
                strides[0] = round_up_4(width);
                strides[1] = strides[0];
                offsets[1] = strides[0] * luma_rows;
                size = offsets[1] + strides[1] * chroma_rows;
            }
            _ => {
                let bpp = format.bytes_per_pixel().unwrap_or(4);
                strides[0] = round_up_4(width * bpp);
                size = strides[0] * height;
            }
        }
        FrameLayout {
            format,
            width,
            height,
            offsets,
            strides,
            size,
            matrix: YuvMatrix::Bt601,
            full_range: false,
        }
    }

    /// The same layout with another YUV matrix and range.
    pub fn with_colorimetry(mut self, matrix: YuvMatrix, full_range: bool) -> FrameLayout {
        self.matrix = matrix;
        self.full_range = full_range;
        self
    }

    /// Number of planes of the format.
    pub fn n_planes(&self) -> usize {
        self.format.n_planes()
    }

    /// `(bytes used per row, rows)` of plane `plane` (0 for an unused plane).
    pub fn plane_extent(&self, plane: usize) -> (usize, usize) {
        let (w, h) = (self.width, self.height);
        match (self.format, plane) {
            (PixelFormat::I420 | PixelFormat::Nv12, 0) => (w, h),
            (PixelFormat::I420, 1 | 2) => (w.div_ceil(2), h.div_ceil(2)),
            (PixelFormat::Nv12, 1) => (2 * w.div_ceil(2), h.div_ceil(2)),
            (f, 0) => (w * f.bytes_per_pixel().unwrap_or(4), h),
            _ => (0, 0),
        }
    }

    /// Checks that the layout is usable on a buffer of `data_len` bytes: width and
    /// height non-zero, every stride at least the bytes a row uses, and every plane
    /// (offset + stride × (rows − 1) + row bytes) inside `data_len`.
    pub fn validate(&self, data_len: usize) -> Result<()> {
        if self.width == 0 || self.height == 0 {
            return Err(Error::Frame(format!(
                "{} frame has an empty size {}x{}",
                self.format, self.width, self.height
            )));
        }
        for plane in 0..self.n_planes() {
            let (row_bytes, rows) = self.plane_extent(plane);
            let stride = self.strides[plane];
            if stride < row_bytes {
                return Err(Error::Frame(format!(
                    "{} {}x{}: plane {plane} stride {stride} is below the {row_bytes} bytes of a row",
                    self.format, self.width, self.height
                )));
            }
            let end = stride
                .checked_mul(rows - 1)
                .and_then(|v| v.checked_add(row_bytes))
                .and_then(|v| v.checked_add(self.offsets[plane]));
            match end {
                Some(end) if end <= data_len => {}
                _ => {
                    return Err(Error::Frame(format!(
                        "{} {}x{}: plane {plane} (offset {}, stride {stride}, {rows} rows) does not fit in {data_len} bytes",
                        self.format, self.width, self.height, self.offsets[plane]
                    )))
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        for &f in PixelFormat::ALL {
            assert_eq!(PixelFormat::from_name(f.name()), Some(f));
            assert_eq!(f.to_string(), f.name());
        }
        assert_eq!(PixelFormat::from_name("rgb"), None);
        assert_eq!(PixelFormat::from_name("GRAY8"), None);
        assert_eq!(PixelFormat::ALL.len(), 12);
        assert!(PixelFormat::I420.is_yuv() && PixelFormat::Nv12.is_yuv());
        assert!(!PixelFormat::Rgbx.is_yuv());
        let alpha: Vec<_> = PixelFormat::ALL.iter().filter(|f| f.has_alpha()).collect();
        assert_eq!(alpha.len(), 4);
        assert!(!PixelFormat::Xrgb.has_alpha());
    }

    #[test]
    fn packed_layouts_match_gstreamer() {
        // Values of gst_video_info_set_format.
        let l = FrameLayout::packed(PixelFormat::Rgb, 5, 3);
        assert_eq!((l.strides, l.offsets, l.size), ([16, 0, 0], [0; 3], 48));
        let l = FrameLayout::packed(PixelFormat::Bgrx, 5, 3);
        assert_eq!((l.strides, l.size), ([20, 0, 0], 60));
        let l = FrameLayout::packed(PixelFormat::I420, 320, 240);
        assert_eq!(l.strides, [320, 160, 160]);
        assert_eq!(l.offsets, [0, 76800, 96000]);
        assert_eq!(l.size, 115200);
        let l = FrameLayout::packed(PixelFormat::I420, 5, 3);
        assert_eq!(l.strides, [8, 4, 4]);
        assert_eq!(l.offsets, [0, 32, 40]);
        assert_eq!(l.size, 48);
        let l = FrameLayout::packed(PixelFormat::Nv12, 5, 3);
        assert_eq!(l.strides, [8, 8, 0]);
        assert_eq!(l.offsets, [0, 32, 0]);
        assert_eq!(l.size, 48);
        assert_eq!(l.matrix, YuvMatrix::Bt601);
        assert!(!l.full_range);
        for &f in PixelFormat::ALL {
            for (w, h) in [(1, 1), (2, 2), (3, 5), (17, 9), (64, 48)] {
                let l = FrameLayout::packed(f, w, h);
                l.validate(l.size).unwrap();
                let need = (0..l.n_planes())
                    .map(|p| {
                        let (row, rows) = l.plane_extent(p);
                        l.offsets[p] + l.strides[p] * (rows - 1) + row
                    })
                    .max()
                    .unwrap();
                assert!(need <= l.size);
                l.validate(need).unwrap();
                assert!(l.validate(need - 1).is_err(), "{f} {w}x{h}");
            }
        }
    }

    #[test]
    fn validate_rejects_bad_layouts() {
        let mut l = FrameLayout::packed(PixelFormat::Rgba, 4, 4);
        l.strides[0] = 15;
        assert!(l.validate(1000).is_err());
        let l = FrameLayout::packed(PixelFormat::Rgb, 0, 4);
        assert!(l.validate(1000).is_err());
        let mut l = FrameLayout::packed(PixelFormat::I420, 4, 4);
        l.strides[2] = 1;
        assert!(l.validate(l.size).is_err());
        let mut l = FrameLayout::packed(PixelFormat::Nv12, 4, 4);
        l.offsets[1] = usize::MAX - 2;
        assert!(l.validate(l.size).is_err());
        // The last row of a plane need not be padded to the stride.
        let mut l = FrameLayout::packed(PixelFormat::Rgb, 3, 2);
        l.strides[0] = 100;
        l.validate(109).unwrap();
        assert!(l.validate(108).is_err());
        let l = l.with_colorimetry(YuvMatrix::Bt709, true);
        assert_eq!((l.matrix, l.full_range), (YuvMatrix::Bt709, true));
    }
}
