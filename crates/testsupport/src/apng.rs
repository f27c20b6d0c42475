//! Decoding an animated PNG the way a viewer shows it, for the timelapse tests.

/// The frames of an APNG as a viewer composites them (palette indices; a transparent
/// index under `Over` keeps the pixel below), with the image's size.
pub fn apng_frames(png_bytes: &[u8]) -> (u32, u32, Vec<Vec<u8>>) {
    let mut dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
    dec.set_transformations(png::Transformations::IDENTITY);
    let mut r = dec.read_info().unwrap();
    let (w, h) = (r.info().width, r.info().height);
    let n = r
        .info()
        .animation_control
        .expect("an APNG has acTL")
        .num_frames;
    let trns = r
        .info()
        .trns
        .as_ref()
        .map(|t| t.to_vec())
        .unwrap_or_default();
    let mut canvas = vec![0u8; (w * h) as usize];
    let mut out = Vec::new();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    for _ in 0..n {
        r.next_frame(&mut buf).unwrap();
        let fc = *r.info().frame_control.as_ref().unwrap();
        for fy in 0..fc.height {
            for fx in 0..fc.width {
                let c = buf[(fy * fc.width + fx) as usize];
                let clear = fc.blend_op == png::BlendOp::Over
                    && trns.get(c as usize).is_some_and(|&a| a == 0);
                if !clear {
                    canvas[((fc.y_offset + fy) * w + fc.x_offset + fx) as usize] = c;
                }
            }
        }
        out.push(canvas.clone());
    }
    (w, h, out)
}
