//! gzip on every core (pigz's scheme). One deflate stream on the task thread
//! capped the sink at ~33 MB/s of input per core (dev/bench, zlib-rs level 6),
//! half the upload ceiling. Here an object's bytes are cut into fixed chunks
//! that a small thread pool compresses independently: each chunk is primed
//! with the 32 KiB before it as dictionary and ends with a sync flush (the
//! last with the final block), so the chunks laid end to end are one ordinary
//! deflate stream inside one gzip member that any gunzip reads. Each job also
//! returns its chunk's CRC-32; they are combined in order for the trailer.
//!
//! Chunks are cut at fixed byte counts (not record boundaries), so the same
//! records always give the same object bytes.

use std::{
    collections::VecDeque,
    io,
    sync::{mpsc, Arc, Mutex},
    thread,
};

use flate2::{Compress, Compression, FlushCompress, Status};

/// Input bytes per job: large enough that the 32 KiB dictionary and the sync
/// flush cost little (≈0.1% larger output than one stream), small enough that
/// the jobs of eight open objects stay a few MiB.
const CHUNK: usize = 256 * 1024;
/// Deflate's window: what a chunk may refer back to.
const WINDOW: usize = 32 * 1024;

struct Job {
    input: Vec<u8>,
    dictionary: Vec<u8>,
    level: Compression,
    last: bool,
    reply: mpsc::SyncSender<io::Result<Deflated>>,
}

struct Deflated {
    bytes: Vec<u8>,
    crc: crc32fast::Hasher,
}

/// Compression threads shared by all objects of a task. The threads end when
/// the pool is dropped.
pub struct GzipPool {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    threads: Vec<thread::JoinHandle<()>>,
    size: usize,
}

impl GzipPool {
    /// One thread per core (at least one).
    pub fn new() -> io::Result<Arc<GzipPool>> {
        let size = thread::available_parallelism().map_or(1, |n| n.get());
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::with_capacity(size);
        for i in 0..size {
            let rx = Arc::clone(&rx);
            threads.push(thread::Builder::new().name(format!("s3-sink-gzip-{i}")).spawn(move || loop {
                // The lock is held only while taking a job, never while compressing.
                let job = match rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok(job) = job else { return };
                let result = deflate(&job);
                // The stream may have been dropped (task stopped): nothing to tell.
                let _ = job.reply.send(result);
            })?);
        }
        Ok(Arc::new(GzipPool { jobs: Mutex::new(Some(tx)), threads, size }))
    }

    fn submit(&self, job: Job) -> io::Result<()> {
        let jobs = self.jobs.lock().map_err(|_| io::Error::other("gzip pool poisoned"))?;
        match jobs.as_ref() {
            Some(tx) => tx.send(job).map_err(|_| io::Error::other("gzip threads stopped")),
            None => Err(io::Error::other("gzip pool shut down")),
        }
    }
}

impl Drop for GzipPool {
    fn drop(&mut self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Raw deflate of one chunk, continuing the stream the dictionary ended.
fn deflate(job: &Job) -> io::Result<Deflated> {
    let mut c = Compress::new(job.level, false);
    if !job.dictionary.is_empty() {
        c.set_dictionary(&job.dictionary).map_err(io::Error::other)?;
    }
    let flush = if job.last { FlushCompress::Finish } else { FlushCompress::Sync };
    let mut out = Vec::with_capacity(job.input.len() / 2 + 1024);
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(4096));
        }
        let consumed = c.total_in() as usize;
        let status = c.compress_vec(&job.input[consumed..], &mut out, flush).map_err(io::Error::other)?;
        let all_in = c.total_in() as usize == job.input.len();
        // A flush is complete once zlib stops with room left in the output.
        let done = if job.last { status == Status::StreamEnd } else { all_in && out.len() < out.capacity() };
        if done {
            break;
        }
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&job.input);
    Ok(Deflated { bytes: out, crc })
}

/// One gzip member written by the pool. Output appears in order in `out`.
pub struct ParallelGzip {
    pool: Arc<GzipPool>,
    level: Compression,
    /// Input not yet handed to a job (up to one chunk).
    input: Vec<u8>,
    /// The last 32 KiB handed over: the next chunk's dictionary.
    window: Vec<u8>,
    in_flight: VecDeque<mpsc::Receiver<io::Result<Deflated>>>,
    crc: crc32fast::Hasher,
    len: u64,
    out: Vec<u8>,
}

impl ParallelGzip {
    pub fn new(pool: Arc<GzipPool>, level: Compression) -> Self {
        // flate2's header: no name, no mtime (so output is deterministic),
        // XFL from the level, OS "unknown".
        let xfl = match level.level() {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        let out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 0xff];
        ParallelGzip {
            pool,
            level,
            input: Vec::new(),
            window: Vec::new(),
            in_flight: VecDeque::new(),
            crc: crc32fast::Hasher::new(),
            len: 0,
            out,
        }
    }

    pub fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        self.len += bytes.len() as u64;
        while !bytes.is_empty() {
            if self.input.capacity() == 0 {
                self.input.reserve_exact(CHUNK);
            }
            let n = (CHUNK - self.input.len()).min(bytes.len());
            self.input.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.input.len() == CHUNK {
                self.dispatch(false)?;
            }
        }
        Ok(())
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let input = std::mem::take(&mut self.input);
        let tail = input.len().saturating_sub(WINDOW);
        let dictionary = std::mem::replace(&mut self.window, input[tail..].to_vec());
        let (reply, answer) = mpsc::sync_channel(1);
        self.pool.submit(Job { input, dictionary, level: self.level, last, reply })?;
        self.in_flight.push_back(answer);
        // Bounds the chunks held per object: a couple per thread keeps every
        // thread busy while this object's output is collected in order.
        while self.in_flight.len() > 2 * self.pool.size {
            self.collect_one()?;
        }
        Ok(())
    }

    fn collect_one(&mut self) -> io::Result<()> {
        let Some(answer) = self.in_flight.pop_front() else { return Ok(()) };
        let chunk = answer.recv().map_err(|_| io::Error::other("a gzip thread stopped"))??;
        self.append(chunk);
        Ok(())
    }

    fn append(&mut self, chunk: Deflated) {
        self.out.extend_from_slice(&chunk.bytes);
        self.crc.combine(&chunk.crc);
    }

    /// Moves finished chunks (in order) to the output without waiting.
    fn collect_ready(&mut self) -> io::Result<()> {
        while let Some(answer) = self.in_flight.front() {
            match answer.try_recv() {
                Ok(chunk) => {
                    self.in_flight.pop_front();
                    self.append(chunk?);
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return Err(io::Error::other("a gzip thread stopped")),
            }
        }
        Ok(())
    }

    /// Compressed bytes ready and not yet taken.
    pub fn pending(&mut self) -> io::Result<usize> {
        self.collect_ready()?;
        Ok(self.out.len())
    }

    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Compresses the rest, waits for every chunk and appends the trailer.
    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        self.dispatch(true)?;
        while !self.in_flight.is_empty() {
            self.collect_one()?;
        }
        let crc = self.crc.clone().finalize();
        self.out.extend_from_slice(&crc.to_le_bytes());
        // ISIZE: the input length modulo 2^32 (RFC 1952).
        self.out.extend_from_slice(&(self.len as u32).to_le_bytes());
        Ok(std::mem::take(&mut self.out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn lines(n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for i in 0..n {
            v.extend_from_slice(
                format!("{{\"order\":{i},\"sku\":\"SKU-{}\",\"qty\":{}}}\n", i % 977, i % 13).as_bytes(),
            );
        }
        v
    }

    #[test]
    fn chunks_form_one_gzip_member_that_gunzip_reads() {
        let pool = GzipPool::new().unwrap();
        for (size, level) in [(0, 6), (10, 6), (CHUNK, 6), (3 * CHUNK + 17, 1), (40_000 * 60, 9)] {
            let data = lines(size / 40 + 1);
            let data = &data[..size.min(data.len())];
            let mut gz = ParallelGzip::new(Arc::clone(&pool), Compression::new(level));
            let mut all = Vec::new();
            // Odd write sizes cross chunk boundaries mid-write.
            for piece in data.chunks(7919) {
                gz.write(piece).unwrap();
                if gz.pending().unwrap() > 10_000 {
                    all.append(gz.output());
                }
            }
            all.extend(gz.finish().unwrap());
            // GzDecoder (not MultiGzDecoder) reads one member only and checks CRC and size.
            let mut decoded = Vec::new();
            flate2::read::GzDecoder::new(&all[..]).read_to_end(&mut decoded).unwrap();
            assert_eq!(decoded, data, "size {size} level {level}");
        }
    }

    #[test]
    fn same_input_gives_same_bytes_and_about_one_streams_size() {
        let pool = GzipPool::new().unwrap();
        let data = lines(100_000);
        let run = || {
            let mut gz = ParallelGzip::new(Arc::clone(&pool), Compression::default());
            gz.write(&data).unwrap();
            gz.finish().unwrap()
        };
        let (a, b) = (run(), run());
        assert_eq!(a, b);
        let mut single = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
        std::io::Write::write_all(&mut single, &data).unwrap();
        let single = single.finish().unwrap();
        assert!(a.len() < single.len() * 102 / 100, "parallel {} vs one stream {}", a.len(), single.len());
    }
}
