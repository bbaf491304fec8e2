//! The llama forward pass on candle's CPU backend, with a KV cache that can be
//! truncated.
//!
//! Why not `candle_transformers::models::quantized_llama`: its KV cache grows by
//! `Tensor::cat` (a full copy per token per layer), cannot be rolled back, caps
//! RoPE at 4096 positions and returns only the last position's logits. Guided
//! generation needs all three: scoring enum options teacher-forced means
//! feeding a branch, reading the logits at every position of it, and rolling
//! the cache back to the branch point. Depending only on `candle-core` and
//! `candle-nn` also keeps `candle-transformers` (hundreds of model files) out
//! of the build. The structure follows candle's `quantized_llama.rs`
//! (MIT/Apache-2.0).
//!
//! Shapes: batch is always 1. `hidden` = 576, `n_head` = 9, `n_kv_head` = 3,
//! `head_dim` = 64 for SmolLM2-135M; weights are `QTensor`s re-quantized to
//! Q8_0 at load (candle has AVX2 kernels for Q8_0 but not for Q4_1).

use std::io::{Read, Seek};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor, gguf_file};
use candle_core::{D, DType, Device, Module, Tensor};

/// Hyper-parameters read from the GGUF metadata (`llama.*` keys).
#[derive(Debug, Clone)]
pub(crate) struct LlamaConfig {
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub hidden: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    /// Trained context length in tokens (`llama.context_length`).
    pub context_length: usize,
    pub vocab_size: usize,
}

impl LlamaConfig {
    fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let u = |k: &str| -> Result<usize> {
            let v = ct
                .metadata
                .get(k)
                .with_context(|| format!("GGUF metadata has no `{k}`"))?;
            Ok(v.to_u32().with_context(|| format!("`{k}` is not a u32"))? as usize)
        };
        let f = |k: &str, default: f32| -> f32 { ct.metadata.get(k).and_then(|v| v.to_f32().ok()).unwrap_or(default) };
        let arch = ct
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        if arch != "llama" {
            bail!("unsupported GGUF architecture `{arch}` (expected `llama`)");
        }
        let n_head = u("llama.attention.head_count")?;
        let hidden = u("llama.embedding_length")?;
        let n_kv_head = u("llama.attention.head_count_kv")?;
        if n_head == 0 || n_kv_head == 0 || hidden % n_head != 0 || n_head % n_kv_head != 0 {
            bail!("inconsistent attention shape: hidden {hidden}, heads {n_head}, kv heads {n_kv_head}");
        }
        let vocab_size = match u("llama.vocab_size") {
            Ok(v) => v,
            Err(_) => ct
                .tensor_infos
                .get("token_embd.weight")
                .map(|t| t.shape.dims()[0])
                .context("cannot find the vocabulary size")?,
        };
        Ok(Self {
            n_layer: u("llama.block_count")?,
            n_head,
            n_kv_head,
            head_dim: hidden / n_head,
            hidden,
            rms_eps: f("llama.attention.layer_norm_rms_epsilon", 1e-5),
            rope_base: f("llama.rope.freq_base", 10_000.0),
            context_length: u("llama.context_length").unwrap_or(2048),
            vocab_size,
        })
    }
}

/// A quantized weight `(out, in)`, usable two ways: candle's quantized
/// matrix-vector kernels (fast for one token), or dequantized to f32 and
/// multiplied with the f32 GEMM (several times faster for a batch of prompt
/// tokens, since candle's quantized kernels do one dot product per
/// (row, column) pair whatever the batch).
struct Weight {
    q: Arc<QTensor>,
    mm: QMatMul,
}

/// Batches of at least this many tokens go through the dequantize + GEMM path.
const GEMM_MIN_ROWS: usize = 8;

impl Weight {
    fn new(q: QTensor) -> Result<Self> {
        let q = Arc::new(q);
        Ok(Self {
            mm: QMatMul::from_arc(q.clone())?,
            q,
        })
    }

    /// `x (1, seq, in)` to `(1, seq, out)`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, seq, k) = x.dims3()?;
        if seq < GEMM_MIN_ROWS {
            return Ok(self.mm.forward(x)?);
        }
        let w = self.q.dequantize(&x.device().clone())?; // (out, in), f32
        let y = x.reshape((b * seq, k))?.matmul(&w.t()?)?;
        Ok(y.reshape((b, seq, ()))?)
    }
}

struct Layer {
    attn_norm: Tensor,
    wq: Weight,
    wk: Weight,
    wv: Weight,
    wo: Weight,
    ffn_norm: Tensor,
    w_gate: Weight,
    w_up: Weight,
    w_down: Weight,
}

/// Per-layer K and V buffers of shape `(1, n_kv_head, capacity, head_dim)`
/// (f32). `len` positions are valid; writing happens in place with
/// `slice_set`, so appending a token costs O(1) copies, and truncating is just
/// lowering `len`.
struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// Growth step in positions. Buffers double up to the context length.
    const MIN_CAPACITY: usize = 512;

    fn new() -> Self {
        Self {
            k: Vec::new(),
            v: Vec::new(),
            len: 0,
            capacity: 0,
        }
    }

    fn ensure_capacity(&mut self, cfg: &LlamaConfig, needed: usize, device: &Device) -> Result<()> {
        if needed <= self.capacity {
            return Ok(());
        }
        let mut cap = self.capacity.max(Self::MIN_CAPACITY);
        while cap < needed {
            cap *= 2;
        }
        let cap = cap.min(cfg.context_length.max(needed));
        let shape = (1, cfg.n_kv_head, cap, cfg.head_dim);
        let mut k = Vec::with_capacity(cfg.n_layer);
        let mut v = Vec::with_capacity(cfg.n_layer);
        for layer in 0..cfg.n_layer {
            let nk = Tensor::zeros(shape, DType::F32, device)?;
            let nv = Tensor::zeros(shape, DType::F32, device)?;
            if self.len > 0 {
                nk.slice_set(&self.k[layer].narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                nv.slice_set(&self.v[layer].narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
            }
            k.push(nk);
            v.push(nv);
        }
        self.k = k;
        self.v = v;
        self.capacity = cap;
        Ok(())
    }
}

/// A loaded llama model plus its single sequence's KV cache.
pub(crate) struct Llama {
    cfg: LlamaConfig,
    device: Device,
    /// Token embeddings, kept quantized: rows are dequantized on lookup.
    embed: Arc<QTensor>,
    layers: Vec<Layer>,
    norm: Tensor,
    output: QMatMul,
    /// RoPE tables, `(context_length, head_dim / 2)`.
    cos: Tensor,
    sin: Tensor,
    cache: KvCache,
}

/// Logits for one or more positions, row-major `(rows, vocab)`.
pub(crate) struct Logits {
    pub data: Vec<f32>,
    pub vocab: usize,
}

impl Logits {
    /// Number of positions.
    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.vocab).unwrap_or(0)
    }
    /// Logits of position `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.vocab..(i + 1) * self.vocab]
    }
}

fn load_tensor<R: Read + Seek>(
    ct: &gguf_file::Content,
    reader: &mut R,
    name: &str,
    device: &Device,
    requantize: bool,
) -> Result<QTensor> {
    let t = ct
        .tensor(reader, name, device)
        .with_context(|| format!("reading tensor `{name}`"))?;
    let dims = t.shape().dims().to_vec();
    let quantizable = dims.len() == 2 && dims[1] % GgmlDType::Q8_0.block_size() == 0;
    if requantize
        && quantizable
        && !matches!(
            t.dtype(),
            GgmlDType::Q8_0 | GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16
        )
    {
        let f = t.dequantize(device)?;
        Ok(QTensor::quantize(&f, GgmlDType::Q8_0)?)
    } else {
        Ok(t)
    }
}

impl Llama {
    /// Loads the weights from an open GGUF file. `requantize_q8_0` converts
    /// every quantized 2-D weight to Q8_0 (about 1.4 s for 135M parameters).
    pub fn load<R: Read + Seek>(ct: &gguf_file::Content, reader: &mut R, requantize_q8_0: bool) -> Result<Self> {
        let device = Device::Cpu;
        let cfg = LlamaConfig::from_gguf(ct)?;
        let rq = requantize_q8_0;
        let embed = Arc::new(load_tensor(ct, reader, "token_embd.weight", &device, rq)?);
        let output = if ct.tensor_infos.contains_key("output.weight") {
            QMatMul::from_qtensor(load_tensor(ct, reader, "output.weight", &device, rq)?)?
        } else {
            // Tied embeddings (SmolLM2): share the same quantized tensor.
            QMatMul::from_arc(embed.clone())?
        };
        let norm = ct.tensor(reader, "output_norm.weight", &device)?.dequantize(&device)?;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let mut q = |n: &str| -> Result<Weight> {
                Weight::new(load_tensor(ct, reader, &format!("blk.{i}.{n}.weight"), &device, rq)?)
            };
            let wq = q("attn_q")?;
            let wk = q("attn_k")?;
            let wv = q("attn_v")?;
            let wo = q("attn_output")?;
            let w_gate = q("ffn_gate")?;
            let w_up = q("ffn_up")?;
            let w_down = q("ffn_down")?;
            let attn_norm = ct
                .tensor(reader, &format!("blk.{i}.attn_norm.weight"), &device)?
                .dequantize(&device)?;
            let ffn_norm = ct
                .tensor(reader, &format!("blk.{i}.ffn_norm.weight"), &device)?
                .dequantize(&device)?;
            layers.push(Layer {
                attn_norm,
                wq,
                wk,
                wv,
                wo,
                ffn_norm,
                w_gate,
                w_up,
                w_down,
            });
        }
        let (cos, sin) = rope_tables(&cfg, &device)?;
        Ok(Self {
            cfg,
            device,
            embed,
            layers,
            norm,
            output,
            cos,
            sin,
            cache: KvCache::new(),
        })
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Lowers the usable context (bounded by the RoPE tables' length).
    pub fn set_context_length(&mut self, n: usize) {
        let max = self.cos.dims().first().copied().unwrap_or(0);
        self.cfg.context_length = n.min(max);
    }

    /// Number of positions held in the KV cache.
    pub fn position(&self) -> usize {
        self.cache.len
    }

    /// Forgets every position from `len` on. `len` larger than the current
    /// position is an error.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len > self.cache.len {
            bail!("cannot truncate KV cache to {len}: it holds {}", self.cache.len);
        }
        self.cache.len = len;
        Ok(())
    }

    /// Appends `tokens` at the current position and returns logits for the
    /// last position only (`all_positions = false`) or for every fed position.
    pub fn forward(&mut self, tokens: &[u32], all_positions: bool) -> Result<Logits> {
        let seq = tokens.len();
        if seq == 0 {
            bail!("forward called with no tokens");
        }
        let pos = self.cache.len;
        if pos + seq > self.cfg.context_length {
            bail!(
                "context overflow: {} + {} tokens > context length {}",
                pos,
                seq,
                self.cfg.context_length
            );
        }
        let cfg = self.cfg.clone();
        self.cache.ensure_capacity(&cfg, pos + seq, &self.device)?;
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(0)?; // (1, seq)
        let mut x = self.embed.embedding(&ids)?; // (1, seq, hidden)
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        let mask = if seq > 1 {
            Some(causal_mask(seq, pos, &self.device)?)
        } else {
            None
        };
        for (li, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, cfg.rms_eps)?;
            let attn = attention(&cfg, layer, &h, &cos, &sin, mask.as_ref(), &mut self.cache, li, pos)?;
            x = (attn + &x)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, cfg.rms_eps)?;
            let gate = candle_nn::ops::silu(&layer.w_gate.forward(&h)?)?;
            let up = layer.w_up.forward(&h)?;
            x = (layer.w_down.forward(&(gate * up)?)? + &x)?;
        }
        self.cache.len = pos + seq;
        let x = if all_positions { x } else { x.narrow(1, seq - 1, 1)? };
        let x = candle_nn::ops::rms_norm(&x.contiguous()?, &self.norm, cfg.rms_eps)?;
        let logits = self.output.forward(&x)?; // (1, rows, vocab)
        let vocab = logits.dim(D::Minus1)?;
        let data = logits.flatten_all()?.to_vec1::<f32>()?;
        Ok(Logits { data, vocab })
    }
}

#[allow(clippy::too_many_arguments)]
fn attention(
    cfg: &LlamaConfig,
    layer: &Layer,
    x: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    mask: Option<&Tensor>,
    cache: &mut KvCache,
    li: usize,
    pos: usize,
) -> Result<Tensor> {
    let (b, seq, _) = x.dims3()?;
    let hd = cfg.head_dim;
    let q = layer
        .wq
        .forward(x)?
        .reshape((b, seq, cfg.n_head, hd))?
        .transpose(1, 2)?
        .contiguous()?;
    let k = layer
        .wk
        .forward(x)?
        .reshape((b, seq, cfg.n_kv_head, hd))?
        .transpose(1, 2)?
        .contiguous()?;
    let v = layer
        .wv
        .forward(x)?
        .reshape((b, seq, cfg.n_kv_head, hd))?
        .transpose(1, 2)?
        .contiguous()?;
    // GGUF llama weights are permuted for the interleaved ("normal") RoPE.
    let q = candle_nn::rotary_emb::rope_i(&q, cos, sin)?;
    let k = candle_nn::rotary_emb::rope_i(&k, cos, sin)?;
    cache.k[li].slice_set(&k, 2, pos)?;
    cache.v[li].slice_set(&v, 2, pos)?;
    let kv_len = pos + seq;
    let k_all = cache.k[li].narrow(2, 0, kv_len)?;
    let v_all = cache.v[li].narrow(2, 0, kv_len)?;
    // Grouped-query attention without materialising repeated K/V: query heads
    // h = g * n_rep + r share KV head g, so view q as (1, n_kv, n_rep * seq, hd).
    let n_rep = cfg.n_head / cfg.n_kv_head;
    let qg = q.reshape((b, cfg.n_kv_head, n_rep * seq, hd))?;
    let scale = 1.0 / (hd as f64).sqrt();
    let att = (qg.matmul(&k_all.t()?)? * scale)?; // (1, n_kv, n_rep*seq, kv_len)
    let att = match mask {
        Some(m) => att.reshape((b, cfg.n_head, seq, kv_len))?.broadcast_add(m)?.reshape((
            b,
            cfg.n_kv_head,
            n_rep * seq,
            kv_len,
        ))?,
        None => att,
    };
    let att = candle_nn::ops::softmax_last_dim(&att)?;
    let y = att.matmul(&v_all)?; // (1, n_kv, n_rep*seq, hd)
    let y = y
        .reshape((b, cfg.n_head, seq, hd))?
        .transpose(1, 2)?
        .reshape((b, seq, cfg.hidden))?;
    layer.wo.forward(&y)
}

/// `(seq, pos + seq)` additive mask: 0 where query `i` may see key `j`
/// (`j <= pos + i`), -inf elsewhere.
fn causal_mask(seq: usize, pos: usize, device: &Device) -> Result<Tensor> {
    let kv = pos + seq;
    let data: Vec<f32> = (0..seq)
        .flat_map(|i| (0..kv).map(move |j| if j <= pos + i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Ok(Tensor::from_vec(data, (seq, kv), device)?)
}

fn rope_tables(cfg: &LlamaConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = cfg.head_dim / 2;
    let n = cfg.context_length;
    let mut cos = Vec::with_capacity(n * half);
    let mut sin = Vec::with_capacity(n * half);
    for p in 0..n {
        for i in 0..half {
            let theta = 1.0f64 / (cfg.rope_base as f64).powf((2 * i) as f64 / cfg.head_dim as f64);
            let a = p as f64 * theta;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    Ok((
        Tensor::from_vec(cos, (n, half), device)?,
        Tensor::from_vec(sin, (n, half), device)?,
    ))
}
