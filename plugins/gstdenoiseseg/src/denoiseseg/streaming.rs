//! Streaming: chain, events, queries, QoS, latency and the src pad task.
use std::sync::Arc;
use std::time::Duration;

use denoiseseg::queue::{self, Output, Recv, Refused, Submitted};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::processing::{carried_metas, layout_of, Frame, Stamp};
use super::MASK_META;
use super::*;

/// What the streaming side shares between chain, events, queries and the src task:
/// the downstream flow and the QoS state. Part of the session's [`State`], so new at
/// each start and under the one state lock.
pub(super) struct Stream {
    /// Downstream flow as last seen by the src task, returned from chain.
    pub(super) flow: Result<gst::FlowSuccess, gst::FlowError>,
    /// QoS from downstream: frames whose running time is before `earliest` are late.
    pub(super) earliest: Option<gst::ClockTime>,
    pub(super) proportion: f64,
    pub(super) segment: Option<gst::FormattedSegment<gst::ClockTime>>,
    /// Latency reported in the last LATENCY query.
    pub(super) reported_latency: gst::ClockTime,
}

impl Default for Stream {
    fn default() -> Self {
        Stream {
            flow: Ok(gst::FlowSuccess::Ok),
            earliest: None,
            proportion: 0.0,
            segment: None,
            reported_latency: gst::ClockTime::ZERO,
        }
    }
}

impl DenoiseSeg {
    /// Runs `f` on the session's streaming state under the state lock (`None` when
    /// stopped). `f` must not block nor take another lock.
    fn with_stream<R>(&self, f: impl FnOnce(&mut Stream) -> R) -> Option<R> {
        lock(&self.state).as_mut().map(|s| f(&mut s.stream))
    }

    /// Downstream flow as last seen by the src task; flushing when stopped.
    fn flow(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.with_stream(|s| s.flow).unwrap_or(Err(gst::FlowError::Flushing))
    }

    pub(super) fn sink_chain(&self, _pad: &gst::Pad, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.flow()?;
        let Some((queue, info)) = self.state_snapshot() else {
            return Err(gst::FlowError::Flushing);
        };
        let Some(info) = info else {
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ("buffer before caps"));
            return Err(gst::FlowError::NotNegotiated);
        };
        let stamp = Stamp::of(&buffer);
        if self.is_late(stamp.pts) {
            queue.stats().count_drop();
            self.post_qos(&stamp);
            return Ok(gst::FlowSuccess::Ok);
        }

        // Plane offsets and strides from the video meta, without allocating.
        let mut planes = ([0usize; 4], [0i32; 4], 0usize);
        if let Some(m) = buffer.meta::<gst_video::VideoMeta>() {
            let n = m.offset().len().min(4);
            planes.0[..n].copy_from_slice(&m.offset()[..n]);
            planes.1[..n].copy_from_slice(&m.stride()[..n]);
            planes.2 = n;
        }
        // A class map an upstream denoiseseg attached: carried to the output when this
        // element's model makes none (denoise-only), replaced when it makes one.
        let upstream = gst::meta::CustomMeta::from_buffer(&buffer, MASK_META).ok();
        let metas = carried_metas(&buffer, upstream.as_ref().map(|m| m.upcast_ref().api()));
        let upstream_mask = upstream.map(|m| m.structure().to_owned());
        let map = buffer.into_mapped_buffer_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ("cannot map the input buffer"));
            gst::FlowError::Error
        })?;
        let (offsets, strides) = match &planes {
            (o, s, n) if *n > 0 => (&o[..*n], &s[..*n]),
            _ => (info.info.offset(), info.info.stride()),
        };
        let layout = layout_of(info.format, &info.info, offsets, strides, map.len())
            .and_then(|l| l.validate(map.len()).map(|_| l))
            .map_err(|e| {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    ("input buffer does not match its caps: {}", e)
                );
                gst::FlowError::Error
            })?;
        let frame = Frame {
            input: Some(map),
            layout,
            info,
            stamp,
            upstream_mask,
            metas,
        };
        match queue.submit(frame) {
            Ok(Submitted::Queued) => {}
            Ok(Submitted::QueuedDroppedOldest(dropped)) | Ok(Submitted::DroppedNew(dropped)) => {
                gst::debug!(
                    CAT,
                    imp = self,
                    "queue full: dropped the frame at {:?} (leaky)",
                    dropped.stamp.pts
                );
                self.post_qos(&dropped.stamp);
            }
            Err(Refused::Flushing) | Err(Refused::Closed) => {
                return self.flow().and(Err(gst::FlowError::Flushing));
            }
        }
        self.flow()
    }

    pub(super) fn running_time(&self, pts: Option<gst::ClockTime>) -> Option<gst::ClockTime> {
        let seg = self.with_stream(|s| s.segment.clone()).flatten()?;
        seg.to_running_time(pts?)
    }

    pub(super) fn is_late(&self, pts: Option<gst::ClockTime>) -> bool {
        let Some(rt) = self.running_time(pts) else {
            return false;
        };
        self.with_stream(|s| match s.earliest {
            Some(earliest) => rt + s.reported_latency < earliest,
            None => false,
        })
        .unwrap_or(false)
    }

    /// Posts QoS for a frame dropped before inference (late, or leaky).
    pub(super) fn post_qos(&self, stamp: &Stamp) {
        let rt = self.running_time(stamp.pts);
        let seg = self.with_stream(|s| s.segment.clone()).flatten();
        let stream_time = seg.as_ref().and_then(|s| stamp.pts.and_then(|p| s.to_stream_time(p)));
        let stats = self.stats_snapshot();
        let msg = gst::message::Qos::builder(true)
            .running_time(rt)
            .stream_time(stream_time)
            .timestamp(stamp.pts)
            .duration(stamp.duration)
            .stats(
                gst::format::Buffers::from_u64(stats.processed),
                gst::format::Buffers::from_u64(stats.dropped),
            )
            .src(&*self.obj())
            .build();
        let _ = self.obj().post_message(msg);
    }

    pub(super) fn stats_snapshot(&self) -> queue::StatsSnapshot {
        match lock(&self.state).as_ref() {
            Some(s) => {
                let snap = s.stats.snapshot();
                lock(&self.report).last_stats = snap;
                snap
            }
            None => lock(&self.report).last_stats,
        }
    }

    pub(super) fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "sink event {:?}", event.type_());
        match event.view() {
            EventView::FlushStart(_) => {
                if let Some((queue, _)) = self.state_snapshot() {
                    queue.flush_start();
                }
                let ok = self.push_to_src_pads(event);
                let _ = self.srcpad.pause_task();
                ok
            }
            EventView::FlushStop(_) => {
                // Serialized: we hold the sink pad's stream lock, so no chain runs now.
                if let Some((queue, _)) = self.state_snapshot() {
                    queue.flush_stop();
                }
                self.with_stream(|s| {
                    s.flow = Ok(gst::FlowSuccess::Ok);
                    s.earliest = None;
                });
                let ok = self.push_to_src_pads(event);
                if let Err(e) = self.start_task() {
                    gst::error!(CAT, imp = self, "cannot restart the src task: {e}");
                    return false;
                }
                ok
            }
            EventView::Caps(c) => {
                let caps = c.caps_owned();
                let info = match FrameInfo::new(&caps) {
                    Ok(i) => Arc::new(i),
                    Err(e) => {
                        gst::element_imp_error!(self, gst::CoreError::Negotiation, ("cannot handle caps: {}", e));
                        return false;
                    }
                };
                gst::info!(CAT, imp = self, "caps {caps}");
                let queue = match lock(&self.state).as_mut() {
                    Some(s) => {
                        s.info = Some(info.clone());
                        s.queue.clone()
                    }
                    None => return false,
                };
                queue.submit_event(QEvent::Caps(event, info)).is_ok()
            }
            EventView::Segment(s) => {
                if let Ok(seg) = s.segment().clone().downcast::<gst::ClockTime>() {
                    self.with_stream(|s| s.segment = Some(seg));
                } else {
                    gst::element_imp_error!(self, gst::StreamError::Format, ("only TIME segments are supported"));
                    return false;
                }
                self.queue_event(event)
            }
            _ if event.is_serialized() => self.queue_event(event),
            _ => self.push_to_src_pads(event),
        }
    }

    /// Sends a serialized event through the queue so that it keeps its place among frames.
    pub(super) fn queue_event(&self, event: gst::Event) -> bool {
        match self.state_snapshot() {
            Some((queue, _)) => queue.submit_event(QEvent::Gst(event)).is_ok(),
            None => self.push_to_src_pads(event),
        }
    }

    pub(super) fn push_to_src_pads(&self, event: gst::Event) -> bool {
        let mask = lock(&self.mask_pad).clone();
        let mut ok = self.srcpad.push_event(event.clone());
        if let Some(mask) = mask {
            let is_stream_start = matches!(event.view(), gst::EventView::StreamStart(_));
            let is_caps = matches!(event.view(), gst::EventView::Caps(_));
            // The mask pad gets its own stream-start and caps (see `push_mask`).
            if !is_stream_start && !is_caps {
                ok |= mask.push_event(event);
            }
        }
        ok
    }

    pub(super) fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        use gst::QueryViewMut;
        match query.view_mut() {
            // Our output buffers are our own: upstream allocates as it likes.
            QueryViewMut::Allocation(_) => false,
            QueryViewMut::Drain(_) => {
                let Some((queue, _)) = self.state_snapshot() else {
                    return true;
                };
                let (tx, rx) = crossbeam_channel::bounded(1);
                if queue.submit_event(QEvent::Drain(tx)).is_ok() {
                    // Answered when the marker is pushed, or dropped by a flush.
                    let _ = rx.recv();
                }
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    pub(super) fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        use gst::QueryViewMut;
        match query.view_mut() {
            QueryViewMut::Latency(q) => {
                let mut upstream = gst::query::Latency::new();
                if !self.sinkpad.peer_query(&mut upstream) {
                    return false;
                }
                let (live, min, max) = upstream.result();
                let ours = self.processing_latency();
                let settings = lock(&self.settings).clone();
                let frame_dur = self
                    .state_snapshot()
                    .and_then(|(_, i)| i)
                    .and_then(|i| {
                        let fps = i.info.fps();
                        (fps.numer() > 0).then(|| {
                            gst::ClockTime::SECOND
                                .mul_div_floor(fps.denom() as u64, fps.numer() as u64)
                                .unwrap_or(gst::ClockTime::ZERO)
                        })
                    })
                    .unwrap_or(gst::ClockTime::ZERO);
                let capacity = frame_dur * settings.max_in_flight() as u64;
                let max = max.map(|m| m + ours + capacity);
                self.with_stream(|s| s.reported_latency = ours);
                gst::debug!(
                    CAT,
                    imp = self,
                    "latency: live {live}, min {} + {ours}, max {max:?}",
                    min
                );
                q.set(live, min + ours, max);
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    /// Processing latency: the measured mean latency plus 25% headroom, at least one
    /// batch timeout (before anything is measured: the batch timeout plus 100 ms).
    pub(super) fn processing_latency(&self) -> gst::ClockTime {
        let stats = self.stats_snapshot();
        let timeout = self.tunables.batch_timeout();
        let measured = if stats.processed > 0 {
            stats.mean_latency + stats.mean_latency / 4
        } else {
            Duration::from_millis(100)
        };
        let d = measured.max(timeout + Duration::from_millis(1));
        gst::ClockTime::from_nseconds(d.as_nanos() as u64)
    }

    pub(super) fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        if let gst::EventView::Qos(q) = event.view() {
            let (_type, proportion, diff, timestamp) = q.get();
            self.with_stream(|s| {
                s.proportion = proportion;
                if let Some(ts) = timestamp {
                    // As basetransform: a frame that arrives late tells when the next one is due.
                    let earliest = if diff > 0 {
                        ts.checked_add(gst::ClockTime::from_nseconds(diff as u64))
                    } else {
                        ts.checked_sub(gst::ClockTime::from_nseconds(diff.unsigned_abs()))
                    };
                    s.earliest = earliest;
                }
            });
        }
        gst::log!(CAT, obj = pad, "upstream event {:?}", event.type_());
        self.sinkpad.push_event(event)
    }

    pub(super) fn start_task(&self) -> Result<(), glib::BoolError> {
        let weak = self.obj().downgrade();
        self.srcpad.start_task(move || {
            let Some(element) = weak.upgrade() else { return };
            element.imp().src_loop();
        })
    }

    /// The src pad task: the single pusher, taking frames and events out of the queue in order.
    pub(super) fn src_loop(&self) {
        let Some((queue, _)) = self.state_snapshot() else {
            let _ = self.srcpad.pause_task();
            return;
        };
        match queue.recv() {
            Recv::Item(Output::Frame {
                out,
                after_drop,
                latency,
            }) => {
                gst::trace!(CAT, imp = self, "frame out after {latency:?}");
                self.finish_joined_progress(None);
                self.maybe_post_latency();
                if self.flow().is_err() {
                    return; // downstream failed: keep draining so upstream never blocks
                }
                let mut buffer = out.buffer;
                let mut mask = out.mask;
                if let (Some(d), Some(m)) = (&out.deferred, &mut mask) {
                    if let Err(e) = self.finish_class_map(&mut buffer, m, d, &out.info) {
                        gst::element_imp_error!(self, gst::StreamError::Failed, ("{}", e));
                        self.set_flow(Err(gst::FlowError::Error));
                        return;
                    }
                }
                if after_drop {
                    buffer.make_mut().set_flags(gst::BufferFlags::DISCONT);
                }
                let flow = self.srcpad.push(buffer);
                let mask_flow = mask.map(|m| self.push_mask(m, &out.info));
                let flow = match (flow, mask_flow) {
                    // Only the src pad being unlinked is no reason to stop while mask is linked.
                    (Err(gst::FlowError::NotLinked), Some(Ok(s))) => Ok(s),
                    (f, _) => f,
                };
                self.set_flow(flow);
            }
            Recv::Item(Output::Event(QEvent::Caps(event, info))) => {
                self.reset_class_maps();
                if let Some(mask) = lock(&self.mask_pad).clone() {
                    self.push_mask_caps(&mask, &info);
                }
                self.push_to_src_pads(event);
            }
            Recv::Item(Output::Event(QEvent::Gst(event))) => {
                if matches!(event.type_(), gst::EventType::Segment | gst::EventType::StreamStart) {
                    // A seek or a new stream: the scene before it says nothing of the next.
                    self.reset_class_maps();
                }
                let eos = event.type_() == gst::EventType::Eos;
                let ok = self.push_to_src_pads(event);
                if eos && !ok {
                    gst::debug!(CAT, imp = self, "EOS not handled downstream");
                }
            }
            Recv::Item(Output::Event(QEvent::Drain(tx))) => {
                let _ = tx.send(());
            }
            Recv::Item(Output::Error(e)) => {
                self.finish_joined_progress(Some(&e.to_string()));
                gst::element_imp_error!(self, gst::StreamError::Failed, ("{}", e));
                self.set_flow(Err(gst::FlowError::Error));
            }
            Recv::Flushing | Recv::Closed => {
                let _ = self.srcpad.pause_task();
            }
        }
    }

    pub(super) fn set_flow(&self, flow: Result<gst::FlowSuccess, gst::FlowError>) {
        let Err(e) = flow else { return };
        if e == gst::FlowError::Flushing {
            return;
        }
        let first = self.with_stream(|s| {
            let first = s.flow.is_ok();
            if first {
                s.flow = Err(e);
            }
            first
        });
        if first == Some(true) {
            gst::debug!(CAT, imp = self, "downstream flow {e:?}");
        }
    }

    /// Posts a LATENCY message when the measured latency outgrew what was reported.
    pub(super) fn maybe_post_latency(&self) {
        let reported = self.with_stream(|s| s.reported_latency).unwrap_or(gst::ClockTime::ZERO);
        if reported.is_zero() {
            return;
        }
        let now = self.processing_latency();
        if now > reported + reported / 5 {
            self.with_stream(|s| s.reported_latency = now);
            gst::info!(CAT, imp = self, "processing latency grew to {now}, posting LATENCY");
            let _ = self
                .obj()
                .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
        }
    }
}
