//! The class map's last steps: its meta on the output buffer and, with
//! `class-confirm-frames` above 1, its temporal stabilization.
//!
//! Stabilization needs the frames in order, which the post-processing workers do not
//! keep (they finish frames in any order). So with it on, a worker leaves the class map
//! unstabilized, the overlay unblended and the meta unattached ([`Deferred`]), and the
//! src pad task, which takes the frames out of the queue in order, finishes them
//! ([`DenoiseSeg::finish_class_map`]): it stabilizes the map in place, blends the
//! overlay over the output frame and attaches the meta. The map's buffer is not shared
//! until then, so nothing is copied.
use std::sync::atomic::Ordering;
use std::sync::Arc;

use denoiseseg::convert;
use denoiseseg::model::ModelSpec;
use denoiseseg::stabilize::ClassStabilizer;
use gst::glib;

use super::processing::FrameInfo;
use super::MASK_META;
use super::*;

/// What the class map meta of every frame carries besides the map, made once per start.
pub(super) struct ClassMaps {
    pub(super) palette: Vec<[u8; 3]>,
    /// The same palette as the meta's `palette` field: each frame's meta takes a reference.
    pub(super) palette_bytes: glib::Bytes,
    pub(super) classes: u32,
    /// Ids of the object classes, which stabilization lets change at once.
    pub(super) objects: Vec<u8>,
}

impl ClassMaps {
    pub(super) fn new(spec: &ModelSpec) -> ClassMaps {
        let palette = spec.palette();
        ClassMaps {
            palette_bytes: glib::Bytes::from_owned(palette.concat()),
            palette,
            classes: spec.classes.len() as u32,
            objects: spec.classes.iter().filter(|c| c.is_object()).map(|c| c.id).collect(),
        }
    }

    /// Attaches the class map meta (see [`MASK_META`]) for `mask` to `b`.
    pub(super) fn attach_meta(
        &self,
        b: &mut gst::BufferRef,
        mask: &gst::Buffer,
        info: &FrameInfo,
    ) -> Result<(), String> {
        let mut meta =
            gst::meta::CustomMeta::add(b, MASK_META).map_err(|e| format!("cannot attach the class map meta: {e}"))?;
        let s = meta.mut_structure();
        s.set("mask", mask.clone());
        s.set("width", info.mask_info.width());
        s.set("height", info.mask_info.height());
        s.set("stride", info.mask_info.stride()[0] as u32);
        s.set("classes", self.classes);
        s.set("palette", self.palette_bytes.clone());
        Ok(())
    }
}

/// A frame whose class map the src pad task finishes (see the module documentation).
pub(super) struct Deferred {
    pub(super) maps: Arc<ClassMaps>,
    /// `output=overlay`: the opacity to blend the stabilized map with.
    pub(super) alpha: Option<f32>,
}

impl DenoiseSeg {
    /// On the src pad task, in frame order: stabilizes `mask` in place, blends it over
    /// `buffer` when the overlay is due and attaches the meta. A DISCONT buffer (a
    /// seek, a new stream) starts the stabilization afresh, as do caps and segments
    /// ([`DenoiseSeg::reset_class_maps`]).
    pub(super) fn finish_class_map(
        &self,
        buffer: &mut gst::Buffer,
        mask: &mut gst::Buffer,
        d: &Deferred,
        info: &FrameInfo,
    ) -> Result<(), String> {
        let confirm = self.live.class_confirm.load(Ordering::Relaxed);
        let stride = info.mask_info.stride()[0] as usize;
        let (w, h) = (info.mask_info.width() as usize, info.mask_info.height() as usize);
        {
            let mut slot = lock(&self.stabilizer);
            let st = match &mut *slot {
                Some(st) if st.confirm() == confirm.clamp(1, ClassStabilizer::MAX_CONFIRM) => st,
                slot => slot.insert(ClassStabilizer::new(confirm, d.maps.objects.iter().copied())),
            };
            if buffer.flags().contains(gst::BufferFlags::DISCONT) {
                st.reset();
            }
            let m = mask
                .get_mut()
                .ok_or("the class map buffer is shared before it is stabilized")?;
            let mut map = m.map_writable().map_err(|_| "cannot map the class map buffer")?;
            st.apply(map.as_mut_slice(), w, h, stride);
        }
        let b = buffer.make_mut();
        if let Some(alpha) = d.alpha {
            let mut out = b.map_writable().map_err(|_| "cannot map the output buffer")?;
            let labels = mask.map_readable().map_err(|_| "cannot map the class map buffer")?;
            convert::blend_labels_frame(
                out.as_mut_slice(),
                &info.out_layout,
                labels.as_slice(),
                stride,
                &d.maps.palette,
                alpha,
            )
            .map_err(|e| e.to_string())?;
        }
        d.maps.attach_meta(b, mask, info)
    }

    /// The next frame's class map starts the stabilization afresh.
    pub(super) fn reset_class_maps(&self) {
        if let Some(st) = lock(&self.stabilizer).as_mut() {
            st.reset();
        }
    }
}
