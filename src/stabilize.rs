//! Temporal stabilization of class maps: a background pixel changes class only once
//! the new class has held for a few consecutive frames.
//!
//! A per-frame segmenter flips the class of uncertain background pixels (lawn edges,
//! shadows, a wall that reads half road, half building) from frame to frame, so a static
//! camera's class map shimmers although nothing in the scene changed. The stabilizer
//! keeps, per pixel, the class it shows, a candidate class and how many consecutive
//! frames the candidate has held. The shown class changes to the frame's class when
//! that class has held for `confirm` frames in a row, or at once when either class is
//! an object class (a person, a vehicle: things that move, whose pixels must follow
//! them without a trail or a delay).
//!
//! With `confirm` = 2 a single-frame flip between background classes never shows, and
//! a real change of background class shows one frame late. The state is three bytes
//! per pixel, allocated when the frame size is first seen or changes, never per frame.

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct ClassStabilizer {
    confirm: u8,
    /// `immediate[c]`: class `c` is an object class (changes show at once).
    immediate: [bool; 256],
    width: usize,
    height: usize,
    shown: Vec<u8>,
    candidate: Vec<u8>,
    held: Vec<u8>,
    primed: bool,
}

impl ClassStabilizer {
    /// The most frames a change may be asked to hold.
    pub const MAX_CONFIRM: u32 = 30;

    /// `confirm`: consecutive frames a new background class must hold before it shows
    /// (1: every change shows at once, the map is passed through); clamped to
    /// 1..=[`Self::MAX_CONFIRM`]. `objects`: the ids of the object classes.
    pub fn new(confirm: u32, objects: impl IntoIterator<Item = u8>) -> Self {
        let mut immediate = [false; 256];
        for c in objects {
            immediate[c as usize] = true;
        }
        ClassStabilizer {
            confirm: confirm.clamp(1, Self::MAX_CONFIRM) as u8,
            immediate,
            width: 0,
            height: 0,
            shown: Vec::new(),
            candidate: Vec::new(),
            held: Vec::new(),
            primed: false,
        }
    }

    /// Frames a new background class must hold before it shows.
    pub fn confirm(&self) -> u32 {
        u32::from(self.confirm)
    }

    /// Forgets the past: the next frame is shown as it is (after a seek, a flush, a
    /// discontinuity or a new stream).
    pub fn reset(&mut self) {
        self.primed = false;
    }

    /// Stabilizes one frame's class map in place: `labels` holds `height` rows of
    /// `width` class ids, rows `stride` bytes apart (bytes between rows untouched).
    /// A frame of another size than the last starts afresh.
    ///
    /// # Panics
    /// When `stride < width` or `labels` is too short for the rows.
    pub fn apply(&mut self, labels: &mut [u8], width: usize, height: usize, stride: usize) {
        assert!(stride >= width, "stride {stride} < width {width}");
        if height > 0 {
            assert!(labels.len() >= (height - 1) * stride + width, "label map too short");
        }
        if self.confirm <= 1 {
            return;
        }
        if !self.primed || width != self.width || height != self.height {
            self.prime(labels, width, height, stride);
            return;
        }
        let n = self.confirm;
        let rows = labels.chunks_mut(stride).take(height);
        let state = self
            .shown
            .chunks_exact_mut(width)
            .zip(self.candidate.chunks_exact_mut(width))
            .zip(self.held.chunks_exact_mut(width));
        for (row, ((shown, cand), held)) in rows.zip(state) {
            let row = &mut row[..width];
            for (((px, s), c), k) in row
                .iter_mut()
                .zip(shown.iter_mut())
                .zip(cand.iter_mut())
                .zip(held.iter_mut())
            {
                let f = *px;
                if f == *c {
                    *k = k.saturating_add(1);
                } else {
                    *c = f;
                    *k = 1;
                }
                if f != *s && (*k >= n || self.immediate[f as usize] || self.immediate[*s as usize]) {
                    *s = f;
                }
                *px = *s;
            }
        }
    }

    fn prime(&mut self, labels: &[u8], width: usize, height: usize, stride: usize) {
        let len = width * height;
        // Resized only when the frame size changes: no allocation in the steady state.
        self.shown.resize(len, 0);
        self.candidate.resize(len, 0);
        self.held.resize(len, 0);
        self.width = width;
        self.height = height;
        for (y, row) in labels.chunks(stride).take(height).enumerate() {
            let dst = y * width..(y + 1) * width;
            self.shown[dst.clone()].copy_from_slice(&row[..width]);
            self.candidate[dst].copy_from_slice(&row[..width]);
        }
        self.held.fill(1);
        self.primed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROAD: u8 = 0;
    const BUILDING: u8 = 2;
    const TERRAIN: u8 = 9;
    const PERSON: u8 = 11;

    fn run(st: &mut ClassStabilizer, frames: &[&[u8]]) -> Vec<Vec<u8>> {
        frames
            .iter()
            .map(|f| {
                let mut v = f.to_vec();
                st.apply(&mut v, f.len(), 1, f.len());
                v
            })
            .collect()
    }

    #[test]
    fn a_one_frame_flip_of_a_background_class_never_shows() {
        let mut st = ClassStabilizer::new(2, [PERSON]);
        let out = run(
            &mut st,
            &[&[ROAD, TERRAIN], &[BUILDING, TERRAIN], &[ROAD, ROAD], &[ROAD, TERRAIN]],
        );
        assert_eq!(out, vec![vec![ROAD, TERRAIN]; 4]);
    }

    #[test]
    fn a_lasting_change_shows_after_confirm_frames() {
        let mut st = ClassStabilizer::new(3, [PERSON]);
        let out = run(&mut st, &[&[ROAD], &[BUILDING], &[BUILDING], &[BUILDING], &[BUILDING]]);
        assert_eq!(
            out,
            vec![vec![ROAD], vec![ROAD], vec![ROAD], vec![BUILDING], vec![BUILDING]]
        );
    }

    #[test]
    fn objects_appear_and_leave_at_once() {
        let mut st = ClassStabilizer::new(5, [PERSON]);
        let out = run(&mut st, &[&[ROAD], &[PERSON], &[PERSON], &[TERRAIN], &[ROAD]]);
        // The person shows on its first frame; where it left, the background shows at
        // once (whatever the frame says), and then holds as a background pixel does.
        assert_eq!(
            out,
            vec![vec![ROAD], vec![PERSON], vec![PERSON], vec![TERRAIN], vec![TERRAIN]]
        );
    }

    #[test]
    fn an_alternating_pixel_keeps_its_first_class() {
        let mut st = ClassStabilizer::new(2, []);
        let frames: Vec<&[u8]> = (0..10)
            .map(|i| if i % 2 == 0 { &[ROAD][..] } else { &[BUILDING][..] })
            .collect();
        assert!(run(&mut st, &frames).iter().all(|f| f == &[ROAD]));
    }

    #[test]
    fn confirm_one_passes_the_map_through() {
        let mut st = ClassStabilizer::new(1, []);
        let out = run(&mut st, &[&[ROAD], &[BUILDING], &[ROAD]]);
        assert_eq!(out, vec![vec![ROAD], vec![BUILDING], vec![ROAD]]);
        assert_eq!(ClassStabilizer::new(0, []).confirm(), 1);
        assert_eq!(ClassStabilizer::new(1000, []).confirm(), ClassStabilizer::MAX_CONFIRM);
    }

    #[test]
    fn reset_and_a_new_size_start_afresh() {
        let mut st = ClassStabilizer::new(3, []);
        run(&mut st, &[&[ROAD, ROAD]]);
        st.reset();
        assert_eq!(run(&mut st, &[&[BUILDING, BUILDING]]), vec![vec![BUILDING, BUILDING]]);
        assert_eq!(run(&mut st, &[&[TERRAIN]]), vec![vec![TERRAIN]]);
        assert_eq!(run(&mut st, &[&[ROAD]]), vec![vec![TERRAIN]]);
    }

    #[test]
    fn strided_rows_keep_their_padding() {
        let mut st = ClassStabilizer::new(2, []);
        let mut a = vec![ROAD, ROAD, 77, 99, BUILDING, BUILDING, 77, 99];
        st.apply(&mut a, 2, 2, 4);
        let mut b = vec![TERRAIN, ROAD, 77, 99, BUILDING, TERRAIN, 77, 99];
        st.apply(&mut b, 2, 2, 4);
        assert_eq!(b, vec![ROAD, ROAD, 77, 99, BUILDING, BUILDING, 77, 99]);
        let mut c = vec![TERRAIN, ROAD, 1, 2, BUILDING, TERRAIN, 3, 4];
        st.apply(&mut c, 2, 2, 4);
        assert_eq!(c, vec![TERRAIN, ROAD, 1, 2, BUILDING, TERRAIN, 3, 4]);
    }
}
