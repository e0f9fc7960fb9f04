package llm

import (
	"errors"
	"math"
	"sync"
	"sync/atomic"
)

// The estimate is a linear model of the prompt's character classes: a weight per
// message (the chat format's framing), per ASCII letter or digit, per space, per tab
// or newline, per other ASCII byte, per accented Latin letter, per other rune of 2 bytes in
// UTF-8 (Cyrillic, Greek, Arabic, Hebrew), per Hangul rune, per other rune of 3 bytes
// (CJK, kana) and per rune of 4 bytes. BPE
// tokenizers spend about one token per four or five letters of English words, nearly
// one per punctuation mark of code, and one per one to three characters of scripts
// outside ASCII, and the classes keep those apart where a single bytes-per-token ratio
// would not: code, Russian and Chinese prompts of the same length in bytes differ in
// tokens by a factor of two or more.
//
// Each model's weights start from the priors below and follow the prompt tokens its
// upstream reports, by recursive least squares with exponential forgetting (Haykin,
// Adaptive Filter Theory, ch. 10): an exponentially weighted fit of tokens per byte
// of each class, whose memory is about 1/(1-Forgetting) requests.
const nFeatures = 10

// priorWeights are the starting tokens per unit of each feature, [messages+1, alnum,
// space, ws, punct, latin, r2, hangul, r3, r4] (see counts), chosen near what OpenAI's
// o200k_base tokenizer gives for English, Go code, Russian and Japanese text
// (TestEstimatorCalibrates starts from them for other tokenizers too).
var priorWeights = [nFeatures]float64{3.5, 0.2, 0.05, 0.5, 0.5, 0.5, 0.35, 0.9, 0.8, 1.3}

func features(r *Request) [nFeatures]float64 {
	c := &r.text
	return [nFeatures]float64{float64(r.Messages + 1), float64(c.alnum), float64(c.space), float64(c.ws), float64(c.punct),
		float64(c.latin), float64(c.r2), float64(c.hangul), float64(c.r3), float64(c.r4)}
}

// EstimatorConfig holds an [Estimator]'s settings. The zero value is the defaults.
type EstimatorConfig struct {
	// Forgetting is the weight each earlier sample keeps per new one, in (0, 1]; 0
	// means 0.99 (a memory of about a hundred requests). 1 never forgets.
	Forgetting float64
	// ImageTokens is what an image part is counted as; 0 means 765 (OpenAI's cost of a
	// 1024×1024 image in high detail). Requests with images do not calibrate.
	ImageTokens int64
	// MaxModels bounds the models calibrated separately; 0 means 1,024. Models past
	// it share one calibration.
	MaxModels int
}

// Estimator estimates a request's prompt tokens from its text and calibrates itself
// per model from the usage upstreams report. It downloads nothing and holds no
// vocabulary. It is safe for concurrent use: an estimate reads ten atomics; a
// calibration takes the model's lock only if it is free (a sample that finds it
// taken is skipped, so a report never waits).
type Estimator struct {
	cfg    EstimatorConfig
	mu     sync.Mutex // serializes adding models
	models atomic.Pointer[map[string]*calib]
	shared *calib
	stats  struct{ used, rejected, skipped atomic.Uint64 }
}

// calib is one model's fit: its weights (float64 bits, read without a lock) and the
// inverse correlation matrix P of the least-squares fit, under mu.
type calib struct {
	w    [nFeatures]atomic.Uint64
	mu   sync.Mutex
	p    [nFeatures][nFeatures]float64
	seen uint16 // the features some sample had, under mu
	n    atomic.Int64
}

// priorVar is P's starting diagonal: the prior weights are trusted to about ±60%.
var priorVar = func() (v [nFeatures]float64) {
	for i, w := range priorWeights {
		v[i] = (0.6 * w) * (0.6 * w)
	}
	return v
}()

func newCalib() *calib {
	c := new(calib)
	for i, w := range priorWeights {
		c.w[i].Store(math.Float64bits(w))
		c.p[i][i] = priorVar[i]
	}
	return c
}

// NewEstimator returns an estimator with cfg's settings.
func NewEstimator(cfg EstimatorConfig) (*Estimator, error) {
	var errs []error
	if math.IsNaN(cfg.Forgetting) || cfg.Forgetting < 0 || cfg.Forgetting > 1 {
		errs = append(errs, errors.New("llm: estimator forgetting out of [0, 1]"))
	}
	if cfg.ImageTokens < 0 {
		errs = append(errs, errors.New("llm: estimator image tokens negative"))
	}
	if cfg.MaxModels < 0 {
		errs = append(errs, errors.New("llm: estimator max models negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Forgetting == 0 {
		cfg.Forgetting = 0.99
	}
	if cfg.ImageTokens == 0 {
		cfg.ImageTokens = 765
	}
	if cfg.MaxModels == 0 {
		cfg.MaxModels = 1024
	}
	e := &Estimator{cfg: cfg, shared: newCalib()}
	e.models.Store(&map[string]*calib{})
	return e, nil
}

func (e *Estimator) calibFor(model string, add bool) *calib {
	if c, ok := (*e.models.Load())[model]; ok {
		return c
	}
	if !add {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	old := *e.models.Load()
	if c, ok := old[model]; ok {
		return c
	}
	if len(old) >= e.cfg.MaxModels {
		return e.shared
	}
	m := make(map[string]*calib, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	c := newCalib()
	m[model] = c
	e.models.Store(&m)
	return c
}

// Estimate returns the estimated prompt tokens of r for its model: at least 1.
func (e *Estimator) Estimate(r *Request) int64 {
	c := e.calibFor(r.Model, false)
	if c == nil {
		c = e.shared
	}
	x := features(r)
	var y float64
	for i := range x {
		y += math.Float64frombits(c.w[i].Load()) * x[i]
	}
	n := int64(math.Ceil(y)) + r.InputTokens + int64(r.Images)*e.cfg.ImageTokens
	return max(n, 1)
}

// textTokens estimates the tokens of text alone, without a message's framing (a
// response's content).
func (e *Estimator) textTokens(model string, c counts) int64 {
	k := e.calibFor(model, false)
	if k == nil {
		k = e.shared
	}
	r := Request{text: c}
	x := features(&r)
	var y float64
	for i := 1; i < nFeatures; i++ {
		y += math.Float64frombits(k.w[i].Load()) * x[i]
	}
	return int64(math.Ceil(y))
}

// Observe calibrates r's model with the prompt tokens its upstream reported. It
// reports whether the sample was used: a request with images or only token ids, a
// count that cannot be true (below a twentieth or above twenty times the estimate,
// or more tokens than the text has bytes plus the framing), or a model whose
// calibration is busy is skipped.
func (e *Estimator) Observe(r *Request, reported int64) bool {
	y := float64(reported - r.InputTokens)
	if r.Images > 0 || r.TextBytes == 0 || y < 1 {
		e.stats.skipped.Add(1)
		return false
	}
	est := float64(e.Estimate(r) - r.InputTokens)
	if y < est/20 || y > est*20 || y > float64(r.TextBytes+16*int64(r.Messages+1)+64) {
		e.stats.rejected.Add(1)
		return false
	}
	c := e.calibFor(r.Model, true)
	if !c.mu.TryLock() {
		e.stats.skipped.Add(1)
		return false
	}
	c.update(features(r), y, e.cfg.Forgetting)
	c.mu.Unlock()
	e.stats.used.Add(1)
	return true
}

// update is one step of exponentially weighted recursive least squares on the sample
// scaled by its size, so that every prompt weighs by its relative error, not its
// length. P's diagonal is held at or below its prior, so that a feature unseen for a
// long time does not wind up a huge gain. c.mu is held.
//
// A feature no sample has had yet keeps its prior: its row and column of P are zero
// but for the diagonal, so the step leaves its weight alone and its variance at the
// prior it is held to. The step therefore runs over the features seen so far only (a
// model asked only plain English has seen four of ten), P·x over the sample's nonzero
// ones, and P, symmetric, is computed in its upper triangle and mirrored
// (BenchmarkEstimatorObserve).
func (c *calib) update(x [nFeatures]float64, y, lambda float64) {
	s := max(1, 0.05*y)
	var nz, seen [nFeatures]int
	n, m := 0, 0
	for i := range x {
		x[i] /= s
		if x[i] != 0 {
			nz[n] = i
			n++
			c.seen |= 1 << i
		}
	}
	for i := range x {
		if c.seen&(1<<i) != 0 {
			seen[m] = i
			m++
		}
	}
	y /= s
	var w, px, k [nFeatures]float64
	for i := range w {
		w[i] = math.Float64frombits(c.w[i].Load())
	}
	den := lambda
	var pred float64
	for _, i := range seen[:m] {
		row := &c.p[i]
		var v float64
		for _, j := range nz[:n] {
			v += row[j] * x[j]
		}
		px[i] = v
	}
	for _, i := range nz[:n] {
		den += x[i] * px[i]
		pred += w[i] * x[i]
	}
	errY := y - pred
	for _, i := range seen[:m] {
		k[i] = px[i] / den
		w[i] = min(max(w[i]+k[i]*errY, 0), 20*priorWeights[i])
	}
	inv := 1 / lambda
	for a, i := range seen[:m] {
		for _, j := range seen[a:m] {
			v := (c.p[i][j] - k[i]*px[j]) * inv
			c.p[i][j], c.p[j][i] = v, v
		}
	}
	for _, i := range seen[:m] {
		if pii := c.p[i][i]; pii > priorVar[i] {
			// Row and column i scaled by d: the diagonal by d twice.
			d := math.Sqrt(priorVar[i] / pii)
			for _, j := range seen[:m] {
				v := c.p[i][j] * d
				c.p[i][j], c.p[j][i] = v, v
			}
			c.p[i][i] = pii * d * d
		}
	}
	for _, i := range seen[:m] {
		c.w[i].Store(math.Float64bits(w[i]))
	}
	c.n.Add(1)
}

// EstimatorStats counts the usage samples an [Estimator] was given.
type EstimatorStats struct {
	// Used calibrated a model; Rejected were implausible; Skipped could not calibrate
	// (images, token ids, a busy model).
	Used, Rejected, Skipped uint64
	// Models is the number of models calibrated separately.
	Models int
}

// Stats returns the estimator's counts.
func (e *Estimator) Stats() EstimatorStats {
	return EstimatorStats{
		Used:     e.stats.used.Load(),
		Rejected: e.stats.rejected.Load(),
		Skipped:  e.stats.skipped.Load(),
		Models:   len(*e.models.Load()),
	}
}

// TokensPerByte returns model's current estimate for plain English-like text (letters
// and spaces in a five-to-one mix), a single figure to show on a dashboard.
func (e *Estimator) TokensPerByte(model string) float64 {
	c := e.calibFor(model, false)
	if c == nil {
		c = e.shared
	}
	return (5*math.Float64frombits(c.w[1].Load()) + math.Float64frombits(c.w[2].Load())) / 6
}
