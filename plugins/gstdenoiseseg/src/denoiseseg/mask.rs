//! The `mask` request pad: requesting and releasing it, its caps and stream-start, pushing.
use std::sync::atomic::Ordering;

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::*;

impl DenoiseSeg {
    /// Sends `mask` the caps of the frames described by `info`, unless it has them.
    pub(super) fn push_mask_caps(&self, mask: &gst::Pad, info: &FrameInfo) {
        let current = mask.current_caps();
        if current
            .as_ref()
            .is_some_and(|c| c.as_ptr() == info.mask_caps.as_ptr() || *c == info.mask_caps)
        {
            return;
        }
        self.ensure_mask_stream_start(mask);
        mask.push_event(gst::event::Caps::new(&info.mask_caps));
    }

    pub(super) fn ensure_mask_stream_start(&self, mask: &gst::Pad) {
        if mask.sticky_event::<gst::event::StreamStart>(0).is_some() {
            return;
        }
        let upstream = self.srcpad.sticky_event::<gst::event::StreamStart>(0);
        let id = upstream
            .as_ref()
            .map(|e| format!("{}/mask", e.stream_id()))
            .unwrap_or_else(|| format!("denoiseseg-mask-{}", self.mask_seqnum.fetch_add(1, Ordering::Relaxed)));
        let mut b = gst::event::StreamStart::builder(&id);
        if let Some(g) = upstream.and_then(|e| e.group_id()) {
            b = b.group_id(g);
        }
        mask.push_event(b.build());
    }

    /// Pushes a class map on `mask`, under the caps of the frame it belongs to.
    pub(super) fn push_mask(&self, buffer: gst::Buffer, info: &FrameInfo) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some(mask) = lock(&self.mask_pad).clone() else {
            return Err(gst::FlowError::NotLinked);
        };
        // A pad requested mid-stream has seen neither the caps nor the segment.
        self.push_mask_caps(&mask, info);
        if mask.sticky_event::<gst::event::Segment>(0).is_none() {
            if let Some(seg) = self.srcpad.sticky_event::<gst::event::Segment>(0) {
                mask.push_event(seg);
            }
        }
        match mask.push(buffer) {
            Err(gst::FlowError::NotLinked) => Ok(gst::FlowSuccess::Ok),
            f => f,
        }
    }

    pub(super) fn request_mask_pad(
        &self,
        templ: &gst::PadTemplate,
        _name: Option<&str>,
        _caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        if templ.name_template() != "mask" {
            return None;
        }
        let mut slot = lock(&self.mask_pad);
        if slot.is_some() {
            gst::warning!(CAT, imp = self, "the mask pad was already requested");
            return None;
        }
        let pad = gst::Pad::builder_from_template(templ)
            .name("mask")
            .event_function(|_pad, parent, event| {
                DenoiseSeg::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| match event.view() {
                        gst::EventView::Qos(_) => true,
                        _ => imp.sinkpad.push_event(event),
                    },
                )
            })
            .build();
        if self.obj().current_state() > gst::State::Ready {
            let _ = pad.set_active(true);
        }
        *slot = Some(pad.clone());
        drop(slot);
        self.obj().add_pad(&pad).ok()?;
        Some(pad)
    }

    pub(super) fn release_mask_pad(&self, pad: &gst::Pad) {
        let mut slot = lock(&self.mask_pad);
        if slot.as_ref() == Some(pad) {
            *slot = None;
        }
        drop(slot);
        let _ = pad.set_active(false);
        let _ = self.obj().remove_pad(pad);
    }
}
