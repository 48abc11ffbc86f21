//! STUB (replaced by the runtime branch).
use super::*;
pub struct PluginHost { infos: Vec<PluginInfo> }
pub struct Session;
impl PluginHost {
    pub fn new(_c: RuntimeConfig) -> Result<Self> { Ok(Self { infos: vec![] }) }
    pub fn load(&mut self, _o: Origin, _b: &[u8]) -> Result<PluginId> { Err(Error::Runtime("stub".into())) }
    pub fn plugins(&self) -> impl Iterator<Item = (PluginId, &PluginInfo)> { self.infos.iter().enumerate().map(|(i, p)| (PluginId(i), p)) }
    pub fn info(&self, id: PluginId) -> &PluginInfo { &self.infos[id.0] }
    pub fn open_session(&self, _id: PluginId, _c: SessionConfig) -> Result<Session> { Err(Error::Runtime("stub".into())) }
}
impl Session {
    pub fn prepare(&mut self, _b: &[InputRecord]) -> Result<Vec<Prepared>> { Ok(vec![]) }
    pub fn resolve(&mut self, _a: &[Answered]) -> Result<Vec<Decided>> { Ok(vec![]) }
}
