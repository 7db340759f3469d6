//! Components assembled byte by byte, for what no toolchain would emit on purpose: a function
//! with a hundred thousand locals, or code sized to the host's limits.
#![allow(dead_code)]

fn leb(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn section(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![id];
    out.extend(leb(payload.len() as u64));
    out.extend_from_slice(payload);
    out
}

/// A component holding one core module whose functions (`() -> ()`) have `locals` i32 locals and
/// a body of `sets` `i32.const 1; local.set k` pairs.
pub fn component(functions: usize, locals: u64, sets: usize) -> Vec<u8> {
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.extend(section(1, &[1, 0x60, 0, 0]));
    let mut funcs = leb(functions as u64);
    funcs.extend(std::iter::repeat_n(0u8, functions));
    module.extend(section(3, &funcs));
    let mut body = vec![1];
    body.extend(leb(locals));
    body.push(0x7f);
    for i in 0..sets {
        body.extend([0x41, 1, 0x21]);
        body.extend(leb(i as u64 % locals.max(1)));
    }
    body.push(0x0b);
    let mut code = leb(functions as u64);
    for _ in 0..functions {
        code.extend(leb(body.len() as u64));
        code.extend_from_slice(&body);
    }
    module.extend(section(10, &code));
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    component.extend(section(1, &module));
    component
}
