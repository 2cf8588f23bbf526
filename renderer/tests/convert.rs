//! The convert pass against a CPU reference (BT.709, limited range), in both outputs, and the
//! exported NV12 ring imported into a second Vulkan device, byte for byte. Runs on lavapipe.

use ash::vk;
use emcee_renderer::model::Model;
use emcee_renderer::{avatar, ExportedRing, FrameOutput, Pose, Renderer};

const W: u32 = 64;
const H: u32 = 48;

/// A frame-sized opaque overlay of pseudo-random colours: it hides the avatar, so the frame is
/// exactly these pixels.
fn noise_overlay(seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    let mut rgba = Vec::with_capacity((W * H * 4) as usize);
    for _ in 0..W * H {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let [r, g, b, _] = state.to_le_bytes();
        rgba.extend_from_slice(&[r, g, b, 255]);
    }
    rgba
}

fn rgb(rgba: &[u8], x: u32, y: u32) -> [f64; 3] {
    let i = ((y * W + x) * 4) as usize;
    [0, 1, 2].map(|c| f64::from(rgba[i + c]) / 255.0)
}

fn luma(c: [f64; 3]) -> f64 {
    0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]
}

/// The reference: full-resolution Y, and (Cb, Cr) per 2×2 block from the block's mean colour.
fn reference(rgba: &[u8]) -> (Vec<u8>, Vec<[u8; 2]>) {
    let byte = |v: f64| v.round().clamp(0.0, 255.0) as u8;
    let mut y_plane = Vec::new();
    for y in 0..H {
        for x in 0..W {
            y_plane.push(byte(16.0 + 219.0 * luma(rgb(rgba, x, y))));
        }
    }
    let mut chroma = Vec::new();
    for by in 0..H / 2 {
        for bx in 0..W / 2 {
            let mut mean = [0.0; 3];
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let c = rgb(rgba, bx * 2 + dx, by * 2 + dy);
                (0..3).for_each(|k| mean[k] += c[k] / 4.0);
            }
            let l = luma(mean);
            chroma.push([byte(128.0 + 224.0 * (mean[2] - l) / 1.8556), byte(128.0 + 224.0 * (mean[0] - l) / 1.5748)]);
        }
    }
    (y_plane, chroma)
}

fn max_diff(a: impl IntoIterator<Item = u8>, b: impl IntoIterator<Item = u8>) -> u8 {
    a.into_iter().zip(b).map(|(x, y)| x.abs_diff(y)).max().unwrap_or(0)
}

fn renderer(output: FrameOutput) -> Renderer {
    Renderer::with_output(W, H, [0, 0, 0], Model::clone(&avatar::default_avatar()), output)
        .expect("a Vulkan device that exports memory (lavapipe does)")
}

#[test]
fn i420_and_nv12_match_the_cpu_reference_within_one_step() {
    let luma_len = (W * H) as usize;
    let mut i420 = renderer(FrameOutput::HostI420);
    let mut nv12 = renderer(FrameOutput::ExportedNv12WithReadback);
    for seed in 1..=3 {
        let overlay = noise_overlay(seed);
        let (want_y, want_uv) = reference(&overlay);
        i420.set_overlay(Some(&overlay));
        nv12.set_overlay(Some(&overlay));
        let planar = i420.render(&Pose::default()).unwrap().to_vec();
        let semi = nv12.render(&Pose::default()).unwrap().to_vec();
        assert_eq!(planar.len(), luma_len * 3 / 2);
        assert_eq!(semi.len(), luma_len * 3 / 2);

        let (y, u, v) = (&planar[..luma_len], &planar[luma_len..luma_len * 5 / 4], &planar[luma_len * 5 / 4..]);
        assert!(max_diff(y.iter().copied(), want_y.iter().copied()) <= 1, "I420 Y, seed {seed}");
        assert!(max_diff(u.iter().copied(), want_uv.iter().map(|c| c[0])) <= 1, "I420 U, seed {seed}");
        assert!(max_diff(v.iter().copied(), want_uv.iter().map(|c| c[1])) <= 1, "I420 V, seed {seed}");

        let (y12, uv) = semi.split_at(luma_len);
        assert!(max_diff(y12.iter().copied(), want_y.iter().copied()) <= 1, "NV12 Y, seed {seed}");
        assert!(max_diff(uv.iter().copied(), want_uv.iter().flatten().copied()) <= 1, "NV12 UV, seed {seed}");
        // One pass, one arithmetic: the two layouts carry the same samples.
        assert!(y12 == y, "NV12 and I420 luma differ, seed {seed}");
        let interleaved: Vec<u8> = u.iter().zip(v).flat_map(|(&a, &b)| [a, b]).collect();
        assert!(uv == &interleaved[..], "NV12 and I420 chroma differ, seed {seed}");
    }
}

#[test]
fn the_host_i420_renderer_has_nothing_to_export() {
    let r = renderer(FrameOutput::HostI420);
    assert!(r.export_ring().is_err());
}

/// The exported ring, imported into a second Vulkan device and mapped.
struct Imported {
    _entry: ash::Entry,
    instance: ash::Instance,
    device: ash::Device,
    slots: Vec<(vk::Buffer, vk::DeviceMemory, *const u8)>,
}

impl Imported {
    /// None (with the reason printed) where the device's exportable memory is not host-visible.
    fn new(ring: ExportedRing) -> Option<Self> {
        // SAFETY: every handle made here is destroyed in Drop; the fds are handed to Vulkan,
        // which owns them after a successful import.
        unsafe {
            let entry = ash::Entry::load().expect("Vulkan loader");
            let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_1);
            let instance =
                entry.create_instance(&vk::InstanceCreateInfo::default().application_info(&app), None).unwrap();
            let physical = instance
                .enumerate_physical_devices()
                .unwrap()
                .into_iter()
                .find(|&pd| {
                    let mut id = vk::PhysicalDeviceIDProperties::default();
                    let mut props = vk::PhysicalDeviceProperties2::default().push_next(&mut id);
                    instance.get_physical_device_properties2(pd, &mut props);
                    id.device_uuid == ring.device_uuid
                })
                .expect("the exporting device, found by its UUID");
            let families = instance.get_physical_device_queue_family_properties(physical);
            assert!(!families.is_empty());
            let priorities = [1.0f32];
            let queues = [vk::DeviceQueueCreateInfo::default().queue_family_index(0).queue_priorities(&priorities)];
            let extensions = [ash::khr::external_memory_fd::NAME.as_ptr()];
            let info = vk::DeviceCreateInfo::default().queue_create_infos(&queues).enabled_extension_names(&extensions);
            let device = instance.create_device(physical, &info, None).unwrap();
            let memory = instance.get_physical_device_memory_properties(physical);
            let mut imported = Self { _entry: entry, instance, device, slots: Vec::new() };
            for slot in ring.slots {
                let handle = vk::ExternalMemoryHandleTypeFlags::OPAQUE_FD;
                let mut external = vk::ExternalMemoryBufferCreateInfo::default().handle_types(handle);
                let create = vk::BufferCreateInfo::default()
                    .size(ring.frame_bytes)
                    .usage(vk::BufferUsageFlags::TRANSFER_SRC)
                    .push_next(&mut external);
                let buffer = imported.device.create_buffer(&create, None).unwrap();
                let req = imported.device.get_buffer_memory_requirements(buffer);
                let host = vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
                let Some(index) = (0..memory.memory_type_count).find(|&i| {
                    req.memory_type_bits & (1 << i) != 0
                        && memory.memory_types[i as usize].property_flags.contains(host)
                }) else {
                    imported.device.destroy_buffer(buffer, None);
                    eprintln!("skipped: the exported memory is not host-visible on this device");
                    return None;
                };
                assert!(slot.dedicated && slot.allocation_size >= ring.frame_bytes);
                let raw = std::os::fd::IntoRawFd::into_raw_fd(slot.fd);
                let mut import = vk::ImportMemoryFdInfoKHR::default().handle_type(handle).fd(raw);
                let mut dedicated = vk::MemoryDedicatedAllocateInfo::default().buffer(buffer);
                let alloc = vk::MemoryAllocateInfo::default()
                    .allocation_size(slot.allocation_size)
                    .memory_type_index(index)
                    .push_next(&mut import)
                    .push_next(&mut dedicated);
                let mem = imported.device.allocate_memory(&alloc, None).expect("import the exported fd");
                imported.device.bind_buffer_memory(buffer, mem, 0).unwrap();
                let ptr = imported.device.map_memory(mem, 0, ring.frame_bytes, vk::MemoryMapFlags::empty()).unwrap();
                imported.slots.push((buffer, mem, ptr as *const u8));
            }
            Some(imported)
        }
    }

    fn bytes(&self, slot: usize, len: usize) -> Vec<u8> {
        // SAFETY: the mapping covers `frame_bytes` ≥ len and lives until Drop; the exporter has
        // waited for the frame's fence, so nothing writes it while it is read.
        unsafe { std::slice::from_raw_parts(self.slots[slot].2, len).to_vec() }
    }
}

impl Drop for Imported {
    fn drop(&mut self) {
        // SAFETY: the handles are ours and idle.
        unsafe {
            for (buffer, memory, _) in self.slots.drain(..) {
                self.device.unmap_memory(memory);
                self.device.destroy_buffer(buffer, None);
                self.device.free_memory(memory, None);
            }
            self.device.destroy_device(None);
            self.instance.destroy_instance(None);
        }
    }
}

#[test]
fn the_exported_ring_seen_from_another_device_holds_each_frame_byte_for_byte() {
    let mut r = renderer(FrameOutput::ExportedNv12WithReadback);
    let ring = r.export_ring().unwrap();
    assert_eq!((ring.width, ring.height, ring.pitch, ring.uv_offset), (W, H, W, u64::from(W * H)));
    assert_eq!(ring.slots.len(), 2);
    let frame_bytes = ring.frame_bytes as usize;
    let Some(imported) = Imported::new(ring) else { return };
    for i in 0..5 {
        // Each frame differs: a new overlay every other frame and a moving jaw.
        if i % 2 == 0 {
            r.set_overlay(Some(&noise_overlay(10 + i)));
        } else {
            r.set_overlay(None);
        }
        let pose = Pose { jaw_open: i as f32 / 5.0, ..Pose::default() };
        let readback = r.render(&pose).unwrap().to_vec();
        let slot = r.last_slot().unwrap();
        assert!(imported.bytes(slot, frame_bytes) == readback, "frame {i} in slot {slot}");
    }

    // With one frame in flight both slots carry frames, and the frame returned sits in its own
    // slot, untouched by the one drawing in the other.
    r.set_overlay(None);
    let first = r.render_next(&Pose::default()).unwrap().map(<[u8]>::to_vec);
    assert!(first.is_none());
    let earlier = r.render_next(&Pose { jaw_open: 1.0, ..Pose::default() }).unwrap().unwrap().to_vec();
    let earlier_slot = r.last_slot().unwrap();
    assert!(imported.bytes(earlier_slot, frame_bytes) == earlier);
    let last = r.flush().unwrap().unwrap().to_vec();
    assert!(earlier != last, "the jaw moved");
    assert_ne!(r.last_slot().unwrap(), earlier_slot, "both ring slots carried frames");
    assert!(imported.bytes(r.last_slot().unwrap(), frame_bytes) == last);
}

#[test]
fn the_zero_copy_output_reads_nothing_back() {
    let mut r = renderer(FrameOutput::ExportedNv12);
    assert!(r.render(&Pose::default()).unwrap().is_empty());
    assert!(r.last_slot().is_some());
    assert_eq!(r.export_ring().unwrap().slots.len(), 2);
}
