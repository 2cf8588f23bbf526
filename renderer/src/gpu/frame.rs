//! One frame through a slot: write its inputs, record the pose, avatar and convert passes,
//! submit; then take the oldest frame back (its fence, its timings, what is read back).

use ash::vk;

use super::{
    vkerr, Buffer, Gpu, GpuTimings, Slot, DIMS_WORDS, FRAME_UNIFORM_WORDS, QUERIES_PER_FRAME, SLOTS, WRITE_I420,
    WRITE_NV12,
};
use crate::math::Mat4;
use crate::{FrameOutput, RenderError};

/// Compute-shader writes, the source of most barriers in a frame.
const COMPUTE_WRITE: (vk::PipelineStageFlags, vk::AccessFlags) =
    (vk::PipelineStageFlags::COMPUTE_SHADER, vk::AccessFlags::SHADER_WRITE);

impl Gpu {
    /// Records a compute dispatch of `pipeline` with `set` bound.
    ///
    /// # Safety
    /// The command buffer is recording; the handles are this renderer's.
    unsafe fn dispatch(
        &self,
        cmd: vk::CommandBuffer,
        pipeline: vk::Pipeline,
        layout: vk::PipelineLayout,
        set: vk::DescriptorSet,
        groups: [u32; 3],
    ) {
        let d = &self.device;
        // SAFETY: the caller's promise.
        unsafe {
            d.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::COMPUTE, pipeline);
            d.cmd_bind_descriptor_sets(cmd, vk::PipelineBindPoint::COMPUTE, layout, 0, &[set], &[]);
            d.cmd_dispatch(cmd, groups[0], groups[1], groups[2]);
        }
    }

    /// Records a barrier on `buffer` from `src` (stage, access) to `dst`, moving it between queue
    /// families when `families` says so.
    ///
    /// # Safety
    /// The command buffer is recording; `buffer` is this renderer's.
    unsafe fn buffer_barrier(
        &self,
        cmd: vk::CommandBuffer,
        buffer: vk::Buffer,
        src: (vk::PipelineStageFlags, vk::AccessFlags),
        dst: (vk::PipelineStageFlags, vk::AccessFlags),
        families: Option<(u32, u32)>,
    ) {
        let (from, to) = families.unwrap_or((vk::QUEUE_FAMILY_IGNORED, vk::QUEUE_FAMILY_IGNORED));
        let barrier = [vk::BufferMemoryBarrier::default()
            .src_access_mask(src.1)
            .dst_access_mask(dst.1)
            .src_queue_family_index(from)
            .dst_queue_family_index(to)
            .buffer(buffer)
            .offset(0)
            .size(vk::WHOLE_SIZE)];
        let flags = vk::DependencyFlags::empty();
        // SAFETY: the caller's promise.
        unsafe { self.device.cmd_pipeline_barrier(cmd, src.0, dst.0, flags, &[], &barrier, &[]) };
    }

    /// Records and submits one frame into a free slot, without waiting for it. `uniforms`: the
    /// `Frame` block; `palette`: one skinning matrix per palette entry; `level`: picture level,
    /// 1 normal … 0 black. Read it back with [`Gpu::wait_oldest`].
    pub fn submit(
        &mut self,
        uniforms: &[u32; FRAME_UNIFORM_WORDS],
        palette: &[Mat4],
        level: f32,
    ) -> Result<(), RenderError> {
        if self.broken {
            return Err(RenderError::Broken);
        }
        let Some(index) = self.next_free_slot() else {
            return Err(RenderError::Busy);
        };
        if self.slots[index].unreclaimed {
            self.reclaim(index)?;
        }
        self.write_inputs(index, uniforms, palette, level);
        self.record(index, level)?;
        self.queue_frame(index)?;
        self.in_flight.push_back(index);
        Ok(())
    }

    /// Writes the frame's uniforms, dims, palette and (when it changed) overlay into the slot's
    /// host-visible buffers.
    fn write_inputs(&mut self, index: usize, uniforms: &[u32; FRAME_UNIFORM_WORDS], palette: &[Mat4], level: f32) {
        let outputs = match self.output {
            FrameOutput::HostI420 => WRITE_I420,
            FrameOutput::ExportedNv12 | FrameOutput::ExportedNv12WithReadback => WRITE_NV12,
        };
        let dims: [u32; DIMS_WORDS] = [self.width, self.height, u32::from(self.overlay_on), level.to_bits(), outputs];
        let slot = &self.slots[index];
        write_mapped(&slot.uniform, &uniforms.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>());
        write_mapped(&slot.dims, &dims.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>());
        write_mapped(&slot.joints, &palette.iter().flatten().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>());
        if self.overlay_on && slot.overlay_generation != self.overlay_generation {
            write_mapped(&slot.overlay, &self.overlay);
            self.slots[index].overlay_generation = self.overlay_generation;
        }
    }

    /// Records the slot's command buffer: the pose pass, the avatar pass and the convert pass,
    /// with timestamps where the queue has them.
    fn record(&self, index: usize, level: f32) -> Result<(), RenderError> {
        let d = &self.device;
        let slot = &self.slots[index];
        let (cmd, query_base) = (slot.cmd, index as u32 * QUERIES_PER_FRAME);
        let timestamp = |stage, n| {
            if let Some((pool, _)) = self.timestamps {
                // SAFETY: the command buffer is recording; the query belongs to this slot.
                unsafe { d.cmd_write_timestamp(cmd, stage, pool, query_base + n) };
            }
        };
        let begin = vk::CommandBufferBeginInfo::default().flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT);
        // SAFETY: the slot is not in flight (its fence was waited for when it was read back, or
        // by `reclaim`), so its command buffer and buffers are ours; every handle recorded is
        // this renderer's.
        unsafe {
            d.reset_command_buffer(cmd, vk::CommandBufferResetFlags::empty()).map_err(vkerr("reset commands"))?;
            d.begin_command_buffer(cmd, &begin).map_err(vkerr("begin commands"))?;
            if let Some((pool, _)) = self.timestamps {
                d.cmd_reset_query_pool(cmd, pool, query_base, QUERIES_PER_FRAME);
            }
            timestamp(vk::PipelineStageFlags::TOP_OF_PIPE, 0);
            // Pose pass: every vertex morphed and skinned once, before the avatar pass reads it.
            let groups = [self.vertex_count.div_ceil(64), 1, 1];
            self.dispatch(cmd, self.pipelines[3], self.layouts[0], slot.avatar_set, groups);
            let vertex_read = (vk::PipelineStageFlags::VERTEX_SHADER, vk::AccessFlags::SHADER_READ);
            self.buffer_barrier(cmd, slot.posed.buffer, COMPUTE_WRITE, vertex_read, None);
            self.record_avatar_pass(slot, level);
            timestamp(vk::PipelineStageFlags::BOTTOM_OF_PIPE, 1);
            self.record_convert_pass(slot);
            timestamp(vk::PipelineStageFlags::BOTTOM_OF_PIPE, 2);
            self.record_hand_over(slot);
            d.end_command_buffer(cmd).map_err(vkerr("end commands"))
        }
    }

    /// Records the render pass: clear to the background, opaque triangles, then alpha-masked.
    ///
    /// # Safety
    /// The slot's command buffer is recording.
    unsafe fn record_avatar_pass(&self, slot: &Slot, level: f32) {
        let (d, cmd) = (&self.device, slot.cmd);
        // The background bytes are display values, like everything in the UNORM target.
        let [r, g, b] = self.background.map(|c| c * level);
        let clear = [
            vk::ClearValue { color: vk::ClearColorValue { float32: [r, g, b, 1.0] } },
            vk::ClearValue { depth_stencil: vk::ClearDepthStencilValue { depth: 1.0, stencil: 0 } },
        ];
        let begin = vk::RenderPassBeginInfo::default()
            .render_pass(self.render_pass)
            .framebuffer(self.framebuffer)
            .render_area(vk::Rect2D { offset: vk::Offset2D { x: 0, y: 0 }, extent: self.extent() })
            .clear_values(&clear);
        let graphics = vk::PipelineBindPoint::GRAPHICS;
        // SAFETY: the caller's promise; every handle is this renderer's.
        unsafe {
            d.cmd_begin_render_pass(cmd, &begin, vk::SubpassContents::INLINE);
            d.cmd_bind_pipeline(cmd, graphics, self.pipelines[0]);
            d.cmd_bind_descriptor_sets(cmd, graphics, self.layouts[0], 0, &[slot.avatar_set], &[]);
            d.cmd_bind_vertex_buffers(cmd, 0, &[self.vertex.buffer], &[0]);
            d.cmd_bind_index_buffer(cmd, self.index.buffer, 0, vk::IndexType::UINT32);
            d.cmd_draw_indexed(cmd, self.opaque_index_count, 1, 0, 0, 0);
            if self.index_count > self.opaque_index_count {
                d.cmd_bind_pipeline(cmd, graphics, self.pipelines[1]);
                let masked = self.index_count - self.opaque_index_count;
                d.cmd_draw_indexed(cmd, masked, 1, self.opaque_index_count, 0, 0);
            }
            d.cmd_end_render_pass(cmd);
        }
    }

    /// Records the convert pass into the slot's output (host I420, or NV12 taken back from
    /// the external consumer).
    ///
    /// # Safety
    /// The slot's command buffer is recording.
    unsafe fn record_convert_pass(&self, slot: &Slot) {
        let cmd = slot.cmd;
        let groups = [(self.width / 8).div_ceil(8), (self.height / 2).div_ceil(8), 1];
        // SAFETY: the caller's promise; every handle is this renderer's.
        unsafe {
            if self.output != FrameOutput::HostI420 {
                // The exported buffer comes back from the external consumer (CUDA), which read
                // it after this slot's fence; its old contents do not matter.
                let top = (vk::PipelineStageFlags::TOP_OF_PIPE, vk::AccessFlags::empty());
                self.buffer_barrier(cmd, slot.nv12.buffer, top, COMPUTE_WRITE, Some(self.external_family()));
            }
            self.dispatch(cmd, self.pipelines[2], self.layouts[1], slot.convert_set, groups);
        }
    }

    /// Records what makes the converted frame its reader's: the host's (I420, or the NV12
    /// verification readback) or the external consumer's.
    ///
    /// # Safety
    /// The slot's command buffer is recording, after the convert pass.
    unsafe fn record_hand_over(&self, slot: &Slot) {
        let cmd = slot.cmd;
        let external = self.external_family();
        let host_read = (vk::PipelineStageFlags::HOST, vk::AccessFlags::HOST_READ);
        let transfer_read = (vk::PipelineStageFlags::TRANSFER, vk::AccessFlags::TRANSFER_READ);
        // SAFETY: the caller's promise; every handle is this renderer's.
        unsafe {
            if self.output == FrameOutput::ExportedNv12WithReadback {
                // The Vulkan readback that the imported copy is compared with.
                self.buffer_barrier(cmd, slot.nv12.buffer, COMPUTE_WRITE, transfer_read, None);
                let region = [vk::BufferCopy { src_offset: 0, dst_offset: 0, size: slot.output.size }];
                self.device.cmd_copy_buffer(cmd, slot.nv12.buffer, slot.output.buffer, &region);
                let transfer_write = (vk::PipelineStageFlags::TRANSFER, vk::AccessFlags::TRANSFER_WRITE);
                self.buffer_barrier(cmd, slot.output.buffer, transfer_write, host_read, None);
            }
            match self.output {
                FrameOutput::HostI420 => self.buffer_barrier(cmd, slot.output.buffer, COMPUTE_WRITE, host_read, None),
                FrameOutput::ExportedNv12 | FrameOutput::ExportedNv12WithReadback => {
                    // Released to the external consumer, which reads it after the fence.
                    let bottom = (vk::PipelineStageFlags::BOTTOM_OF_PIPE, vk::AccessFlags::empty());
                    let src = if self.output == FrameOutput::ExportedNv12 { COMPUTE_WRITE } else { transfer_read };
                    self.buffer_barrier(cmd, slot.nv12.buffer, src, bottom, Some((external.1, external.0)));
                }
            }
        }
    }

    /// The queue-family transfer from the external consumer to this queue.
    fn external_family(&self) -> (u32, u32) {
        (vk::QUEUE_FAMILY_EXTERNAL, self.family)
    }

    /// Submits the slot's commands, signalling its fence and (where there is one) the next
    /// timeline value.
    fn queue_frame(&mut self, index: usize) -> Result<(), RenderError> {
        let slot = &self.slots[index];
        let cmds = [slot.cmd];
        let mut submit = vk::SubmitInfo::default().command_buffers(&cmds);
        let value = self.timeline.as_ref().map_or(0, |t| t.last_value + 1);
        let (semaphores, values) = match &self.timeline {
            Some(t) => (vec![t.semaphore], vec![value]),
            None => (Vec::new(), Vec::new()),
        };
        let mut signal = vk::TimelineSemaphoreSubmitInfo::default().signal_semaphore_values(&values);
        if self.timeline.is_some() {
            submit = submit.signal_semaphores(&semaphores).push_next(&mut signal);
        }
        // SAFETY: the command buffer was recorded by `record`; the fence is unsignalled (reset
        // when the slot was last reclaimed, or never used).
        unsafe { self.device.queue_submit(self.queue, &[submit], slot.fence) }.map_err(vkerr("submit"))?;
        if let Some(t) = &mut self.timeline {
            t.last_value = value;
        }
        self.slots[index].timeline_value = value;
        Ok(())
    }

    /// Frames submitted and not yet read back.
    /// From now on every call fails as after a lost device (fault drills).
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// The slot the next [`Gpu::submit`] writes.
    pub fn next_free_slot(&self) -> Option<usize> {
        (0..SLOTS).find(|i| !self.in_flight.contains(i))
    }

    pub fn frames_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Takes the oldest frame in flight and writes what is read back of it into `out` (resized;
    /// empty when nothing is read back). Returns its slot, whose exported buffer holds it until
    /// the slot's next frame is submitted; None when no frame is in flight.
    ///
    /// Waits for the frame's fence, except with `hand_over_early` on an exported output with a
    /// timeline semaphore and nothing to read back: then the frame may still be drawing, and
    /// the consumer waits for [`Gpu::timeline_value`] of the slot instead.
    pub fn wait_oldest(&mut self, out: &mut Vec<u8>, hand_over_early: bool) -> Result<Option<usize>, RenderError> {
        if self.broken {
            return Err(RenderError::Broken);
        }
        let Some(&index) = self.in_flight.front() else { return Ok(None) };
        self.in_flight.pop_front();
        if hand_over_early && self.timeline.is_some() && self.output == FrameOutput::ExportedNv12 {
            self.slots[index].unreclaimed = true;
            out.clear();
            return Ok(Some(index));
        }
        self.reclaim(index)?;
        let slot = &self.slots[index];
        let len = slot.output.size as usize;
        out.resize(len, 0);
        if let Some(ptr) = slot.output.mapped {
            // SAFETY: after the slot's fence (and the barrier to HOST_READ in its commands) its
            // mapped output is the host's to read, `len` bytes long.
            unsafe { std::ptr::copy_nonoverlapping(ptr, out.as_mut_ptr(), len) };
        }
        Ok(Some(index))
    }

    /// Waits for `index`'s fence and reads its GPU timings: the slot is the CPU's again.
    fn reclaim(&mut self, index: usize) -> Result<(), RenderError> {
        let d = &self.device;
        let fence = self.slots[index].fence;
        // SAFETY: the fence and query pool belong to this slot, which was submitted.
        unsafe {
            if let Err(code) = d.wait_for_fences(&[fence], true, 5_000_000_000) {
                // Lost or hung: the slot may still be in use, so it is never reused.
                self.broken = true;
                return Err(RenderError::Vulkan { what: "wait for frame", code });
            }
            d.reset_fences(&[fence]).map_err(vkerr("reset fence"))?;
            self.slots[index].unreclaimed = false;
            if let Some((pool, period_ns)) = self.timestamps {
                let mut ticks = [0u64; QUERIES_PER_FRAME as usize];
                let first = index as u32 * QUERIES_PER_FRAME;
                let read = d.get_query_pool_results(pool, first, &mut ticks, vk::QueryResultFlags::TYPE_64);
                self.last_timings = read.ok().map(|_| {
                    let ms = |a: u64, b: u64| b.saturating_sub(a) as f64 * f64::from(period_ns) / 1e6;
                    GpuTimings { render_ms: ms(ticks[0], ticks[1]), convert_ms: ms(ticks[1], ticks[2]) }
                });
            }
        }
        Ok(())
    }

    /// The timeline value that signals once `slot`'s last frame is written; None without an
    /// exported timeline semaphore.
    pub fn timeline_value(&self, slot: usize) -> Option<u64> {
        self.timeline.as_ref().and(self.slots.get(slot)).map(|s| s.timeline_value)
    }
}

/// Copies `bytes` into a host-visible buffer's mapping (cut to the buffer's size); a buffer
/// that is not mapped is left alone.
fn write_mapped(buffer: &Buffer, bytes: &[u8]) {
    if let Some(ptr) = buffer.mapped {
        // SAFETY: the mapping covers the buffer's whole allocation, at least `size` bytes; the
        // callers write only slots that are not in flight, so the GPU does not read it now.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len().min(buffer.size as usize)) };
    }
}
