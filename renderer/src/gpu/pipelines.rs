//! What every frame binds, made once per renderer: descriptor layouts and each slot's sets,
//! shader modules, and the graphics (opaque, alpha-masked) and compute (convert, pose)
//! pipelines.

use ash::vk;

use super::{vkerr, Gpu, Slot, SLOTS, VERTEX_FLOATS};
use crate::model::Model;
use crate::RenderError;

static AVATAR_SPV: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/avatar.spv"));
static CONVERT_SPV: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/convert.spv"));
static POSE_SPV: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pose.spv"));

/// The avatar set's bindings (`avatar.wgsl`, `pose.wgsl`): it serves the pose pass (compute) and
/// the avatar pass (graphics).
const AVATAR_BINDINGS: [(vk::DescriptorType, vk::ShaderStageFlags); 7] = {
    use vk::DescriptorType as T;
    use vk::ShaderStageFlags as S;
    [
        (T::UNIFORM_BUFFER, S::from_raw(S::VERTEX.as_raw() | S::FRAGMENT.as_raw() | S::COMPUTE.as_raw())), // frame
        (T::STORAGE_BUFFER, S::COMPUTE), // morph deltas
        (T::STORAGE_BUFFER, S::COMPUTE), // joints
        (T::SAMPLED_IMAGE, S::FRAGMENT), // textures
        (T::SAMPLER, S::FRAGMENT),       // sampler
        (T::STORAGE_BUFFER, S::from_raw(S::VERTEX.as_raw() | S::COMPUTE.as_raw())), // posed vertices
        (T::STORAGE_BUFFER, S::COMPUTE), // rest vertices
    ]
};

/// The convert set's bindings (`convert.wgsl`), all compute.
const CONVERT_BINDINGS: [vk::DescriptorType; 5] = [
    vk::DescriptorType::SAMPLED_IMAGE,  // the rendered colour image
    vk::DescriptorType::STORAGE_BUFFER, // I420 out
    vk::DescriptorType::UNIFORM_BUFFER, // dims
    vk::DescriptorType::STORAGE_BUFFER, // overlay
    vk::DescriptorType::STORAGE_BUFFER, // NV12 out
];

impl Gpu {
    /// Everything made once per renderer for `model`, in order.
    pub(super) fn build(&mut self, model: &Model) -> Result<(), RenderError> {
        self.build_targets()?;
        self.upload_model(model)?;
        self.upload_textures(&model.textures)?;
        self.make_slot_buffers(model)?;
        self.build_descriptors()?;
        self.build_pipelines()
    }

    /// The two set layouts (avatar, convert) with a pipeline layout each, and each slot's sets.
    fn build_descriptors(&mut self) -> Result<(), RenderError> {
        let avatar: Vec<vk::DescriptorSetLayoutBinding> =
            AVATAR_BINDINGS.iter().enumerate().map(|(i, &(ty, stages))| layout_binding(i, ty, stages)).collect();
        let convert: Vec<vk::DescriptorSetLayoutBinding> = CONVERT_BINDINGS
            .iter()
            .enumerate()
            .map(|(i, &ty)| layout_binding(i, ty, vk::ShaderStageFlags::COMPUTE))
            .collect();
        for bindings in [&avatar, &convert] {
            let info = vk::DescriptorSetLayoutCreateInfo::default().bindings(bindings);
            // SAFETY: valid create infos on our device; both are kept in self for Drop.
            unsafe {
                let layout = self
                    .device
                    .create_descriptor_set_layout(&info, None)
                    .map_err(vkerr("create descriptor set layout"))?;
                self.set_layouts.push(layout);
                let set_layouts = [layout];
                let info = vk::PipelineLayoutCreateInfo::default().set_layouts(&set_layouts);
                let pl = self.device.create_pipeline_layout(&info, None).map_err(vkerr("create pipeline layout"))?;
                self.layouts.push(pl);
            }
        }
        // Per slot: an avatar set and a convert set.
        let per_slot = |count: u32| count * SLOTS as u32;
        let count = |ty: vk::DescriptorType| {
            let n = AVATAR_BINDINGS.iter().filter(|b| b.0 == ty).count()
                + CONVERT_BINDINGS.iter().filter(|&&t| t == ty).count();
            vk::DescriptorPoolSize { ty, descriptor_count: per_slot(n as u32) }
        };
        let sizes = [
            count(vk::DescriptorType::UNIFORM_BUFFER),
            count(vk::DescriptorType::SAMPLED_IMAGE),
            count(vk::DescriptorType::SAMPLER),
            count(vk::DescriptorType::STORAGE_BUFFER),
        ];
        let info = vk::DescriptorPoolCreateInfo::default().max_sets(per_slot(2)).pool_sizes(&sizes);
        // SAFETY: a valid create info on our device; the pool is destroyed in Drop.
        self.descriptor_pool =
            unsafe { self.device.create_descriptor_pool(&info, None) }.map_err(vkerr("create descriptor pool"))?;
        for i in 0..SLOTS {
            let info = vk::DescriptorSetAllocateInfo::default()
                .descriptor_pool(self.descriptor_pool)
                .set_layouts(&self.set_layouts);
            // SAFETY: the pool has room for two sets per slot; the sets go with the pool.
            let sets =
                unsafe { self.device.allocate_descriptor_sets(&info) }.map_err(vkerr("allocate descriptor sets"))?;
            (self.slots[i].avatar_set, self.slots[i].convert_set) = (sets[0], sets[1]);
            self.write_slot_sets(&self.slots[i]);
        }
        Ok(())
    }

    /// Points a slot's descriptor sets at its own buffers and the shared images.
    fn write_slot_sets(&self, slot: &Slot) {
        // The pass writes only the outputs its `dims` ask for; an unused binding points at the
        // other output's buffer so that every binding is valid.
        let (i420, nv12) = match (slot.output.buffer, slot.nv12.buffer) {
            (out, nv12) if nv12 == vk::Buffer::null() => (out, out),
            (out, nv12) if out == vk::Buffer::null() => (nv12, nv12),
            pair => pair,
        };
        let read_only = vk::ImageLayout::SHADER_READ_ONLY_OPTIMAL;
        let avatar = [
            Resource::Buffer(slot.uniform.buffer),
            Resource::Buffer(self.deltas.buffer),
            Resource::Buffer(slot.joints.buffer),
            Resource::Image(self.textures.view, read_only),
            Resource::Sampler(self.sampler),
            Resource::Buffer(slot.posed.buffer),
            Resource::Buffer(self.vertex.buffer),
        ];
        let convert = [
            Resource::Image(self.color.view, read_only),
            Resource::Buffer(i420),
            Resource::Buffer(slot.dims.buffer),
            Resource::Buffer(slot.overlay.buffer),
            Resource::Buffer(nv12),
        ];
        let avatar_types = AVATAR_BINDINGS.map(|b| b.0);
        let infos: Vec<Info> = avatar.iter().chain(&convert).map(Resource::info).collect();
        let targets = avatar_types.iter().enumerate().map(|(i, &ty)| (slot.avatar_set, i, ty));
        let targets = targets.chain(CONVERT_BINDINGS.iter().enumerate().map(|(i, &ty)| (slot.convert_set, i, ty)));
        let writes: Vec<vk::WriteDescriptorSet> = targets
            .zip(&infos)
            .map(|((set, binding, ty), info)| {
                let write =
                    vk::WriteDescriptorSet::default().dst_set(set).dst_binding(binding as u32).descriptor_type(ty);
                match info {
                    Info::Buffer(b) => write.buffer_info(b),
                    Info::Image(i) => write.image_info(i),
                }
            })
            .collect();
        // SAFETY: every set, buffer, view and sampler named is this renderer's and alive; the
        // slot is not in flight (sets are written while the renderer is built).
        unsafe { self.device.update_descriptor_sets(&writes, &[]) };
    }

    fn shader(&mut self, spv: &[u8]) -> Result<vk::ShaderModule, RenderError> {
        let words: Vec<u32> = spv.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        // SAFETY: SPIR-V words compiled by naga at build time; the module is kept for Drop.
        let module =
            unsafe { self.device.create_shader_module(&vk::ShaderModuleCreateInfo::default().code(&words), None) }
                .map_err(vkerr("create shader module"))?;
        self.modules.push(module);
        Ok(module)
    }

    /// pipelines[0]: opaque triangles, [1]: alpha-masked ones, [2]: convert, [3]: pose.
    fn build_pipelines(&mut self) -> Result<(), RenderError> {
        let avatar = self.shader(AVATAR_SPV)?;
        let convert = self.shader(CONVERT_SPV)?;
        let pose = self.shader(POSE_SPV)?;
        let stages = |fragment: &'static std::ffi::CStr| {
            [
                vk::PipelineShaderStageCreateInfo::default()
                    .stage(vk::ShaderStageFlags::VERTEX)
                    .module(avatar)
                    .name(c"vs_main"),
                vk::PipelineShaderStageCreateInfo::default()
                    .stage(vk::ShaderStageFlags::FRAGMENT)
                    .module(avatar)
                    .name(fragment),
            ]
        };
        let (opaque_stages, masked_stages) = (stages(c"fs_main"), stages(c"fs_masked"));
        let stride = (VERTEX_FLOATS * 4) as u32;
        let binding =
            [vk::VertexInputBindingDescription { binding: 0, stride, input_rate: vk::VertexInputRate::VERTEX }];
        // Position, normal, colour (vec3 each), joints and weights (vec4 each), uv and material (vec2 each).
        let (vec2, vec3, vec4) =
            (vk::Format::R32G32_SFLOAT, vk::Format::R32G32B32_SFLOAT, vk::Format::R32G32B32A32_SFLOAT);
        let attrs: Vec<vk::VertexInputAttributeDescription> =
            [(vec3, 0), (vec3, 12), (vec3, 24), (vec4, 36), (vec4, 52), (vec2, 68), (vec2, 76)]
                .iter()
                .enumerate()
                .map(|(location, &(format, offset))| vk::VertexInputAttributeDescription {
                    location: location as u32,
                    binding: 0,
                    format,
                    offset,
                })
                .collect();
        let vertex_input = vk::PipelineVertexInputStateCreateInfo::default()
            .vertex_binding_descriptions(&binding)
            .vertex_attribute_descriptions(&attrs);
        let assembly =
            vk::PipelineInputAssemblyStateCreateInfo::default().topology(vk::PrimitiveTopology::TRIANGLE_LIST);
        let viewport = [vk::Viewport {
            x: 0.0,
            y: 0.0,
            width: self.width as f32,
            height: self.height as f32,
            min_depth: 0.0,
            max_depth: 1.0,
        }];
        let scissor = [vk::Rect2D { offset: vk::Offset2D { x: 0, y: 0 }, extent: self.extent() }];
        let viewport_state = vk::PipelineViewportStateCreateInfo::default().viewports(&viewport).scissors(&scissor);
        let raster = vk::PipelineRasterizationStateCreateInfo::default()
            .polygon_mode(vk::PolygonMode::FILL)
            .cull_mode(vk::CullModeFlags::NONE)
            .line_width(1.0);
        let multisample =
            vk::PipelineMultisampleStateCreateInfo::default().rasterization_samples(vk::SampleCountFlags::TYPE_1);
        let depth = vk::PipelineDepthStencilStateCreateInfo::default()
            .depth_test_enable(true)
            .depth_write_enable(true)
            .depth_compare_op(vk::CompareOp::LESS);
        let blend_attachment =
            [vk::PipelineColorBlendAttachmentState::default().color_write_mask(vk::ColorComponentFlags::RGBA)];
        let blend = vk::PipelineColorBlendStateCreateInfo::default().attachments(&blend_attachment);
        let graphics = |stages| {
            vk::GraphicsPipelineCreateInfo::default()
                .stages(stages)
                .vertex_input_state(&vertex_input)
                .input_assembly_state(&assembly)
                .viewport_state(&viewport_state)
                .rasterization_state(&raster)
                .multisample_state(&multisample)
                .depth_stencil_state(&depth)
                .color_blend_state(&blend)
                .layout(self.layouts[0])
                .render_pass(self.render_pass)
                .subpass(0)
        };
        // pipelines[0]: opaque triangles, pipelines[1]: alpha-masked ones.
        let graphics = [graphics(&opaque_stages), graphics(&masked_stages)];
        // SAFETY: the shader modules, layouts and render pass are this renderer's and alive; the
        // pipelines are kept in self for Drop.
        let pipelines = unsafe { self.device.create_graphics_pipelines(vk::PipelineCache::null(), &graphics, None) }
            .map_err(|(_, code)| RenderError::Vulkan { what: "create graphics pipeline", code })?;
        self.pipelines.extend(pipelines);
        // pipelines[2]: convert, pipelines[3]: pose.
        let compute_stage = |module| {
            vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(module)
                .name(c"main")
        };
        let compute = [
            vk::ComputePipelineCreateInfo::default().stage(compute_stage(convert)).layout(self.layouts[1]),
            vk::ComputePipelineCreateInfo::default().stage(compute_stage(pose)).layout(self.layouts[0]),
        ];
        // SAFETY: as for the graphics pipelines.
        let pipelines = unsafe { self.device.create_compute_pipelines(vk::PipelineCache::null(), &compute, None) }
            .map_err(|(_, code)| RenderError::Vulkan { what: "create compute pipeline", code })?;
        self.pipelines.extend(pipelines);
        Ok(())
    }
}

/// One binding of a set layout, one descriptor.
fn layout_binding(
    binding: usize,
    ty: vk::DescriptorType,
    stages: vk::ShaderStageFlags,
) -> vk::DescriptorSetLayoutBinding<'static> {
    vk::DescriptorSetLayoutBinding::default()
        .binding(binding as u32)
        .descriptor_type(ty)
        .descriptor_count(1)
        .stage_flags(stages)
}

/// What one descriptor points at.
enum Resource {
    Buffer(vk::Buffer),
    Image(vk::ImageView, vk::ImageLayout),
    Sampler(vk::Sampler),
}

/// A descriptor write's info array (one element), kept alive until the update.
enum Info {
    Buffer([vk::DescriptorBufferInfo; 1]),
    Image([vk::DescriptorImageInfo; 1]),
}

impl Resource {
    fn info(&self) -> Info {
        match *self {
            Resource::Buffer(buffer) => {
                Info::Buffer([vk::DescriptorBufferInfo { buffer, offset: 0, range: vk::WHOLE_SIZE }])
            }
            Resource::Image(image_view, image_layout) => {
                Info::Image([vk::DescriptorImageInfo { sampler: vk::Sampler::null(), image_view, image_layout }])
            }
            Resource::Sampler(sampler) => Info::Image([vk::DescriptorImageInfo {
                sampler,
                image_view: vk::ImageView::null(),
                image_layout: vk::ImageLayout::UNDEFINED,
            }]),
        }
    }
}
