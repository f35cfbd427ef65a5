//! The drawable alphabets and the random answer text.
//!
//! Every alphabet leaves out characters that people confuse once they are
//! rotated, warped and crossed by strokes: a captcha a person misreads is a
//! failed login, and one try is all an image gets.

use rand::Rng;

use super::Mode;

/// Latin mode: capital letters and digits with every look-alike removed.
///
/// Only capitals are drawn (the answer is matched case-insensitively, so
/// the case a person types does not matter) because the hint can then say
/// exactly what to expect. Dropped: `0 O Q D` (round), `1 I` (a bar), `2 Z`,
/// `5 S`, `6 G`, `8 B` and `9`. 21 characters, so four of them give 194,481
/// answers.
pub(crate) static LATIN: [char; 21] = [
    '3', '4', '7', 'A', 'C', 'E', 'F', 'H', 'J', 'K', 'L', 'M', 'N', 'P', 'R', 'T', 'U', 'V', 'W',
    'X', 'Y',
];

/// Digits mode: `0` (read as the letter O) and `1` (a `7` once rotated) are
/// left out; the other eight stay so the answer space is still 8^len.
pub(crate) static DIGITS: [char; 8] = ['2', '3', '4', '5', '6', '7', '8', '9'];

// Chinese mode: 800 common characters, all from GB2312 level 1 (rows 16-55).
//
// Made by `tools/fonts/subset-cjk.py charset --count 800 --max-strokes 11`:
// the level-1 characters ranked by frequency (the summed frequencies of the
// words containing them in the dictionary of the `jieba` 0.42.1 segmenter),
// keeping those with 2 to 11 strokes (Unihan kTotalStrokes) since denser
// characters turn into blots at captcha size, and dropping look-alike groups
// such as 己已巳, 未末, 土士, 人入八. Stored in code point order. The CJK
// font subset holds exactly these glyphs: rerun the subset command of the
// same script after editing the list.
/// See the comment above: common, simple, unambiguous GB2312 level-1 characters.
pub(crate) static ZH: [char; 800] = [
    '七', '万', '三', '上', '下', '不', '与', '专', '且', '世', '业', '东', '两', '严', '个', '中',
    '丰', '临', '为', '举', '久', '么', '义', '之', '乎', '乐', '九', '也', '习', '乡', '书', '买',
    '乱', '了', '争', '事', '二', '云', '互', '五', '亚', '些', '交', '产', '京', '亮', '亲', '亿',
    '什', '仅', '介', '仍', '从', '他', '代', '以', '们', '件', '价', '任', '份', '企', '众', '优',
    '会', '传', '伤', '伯', '似', '但', '位', '低', '住', '体', '何', '余', '作', '你', '使', '例',
    '供', '依', '便', '保', '信', '修', '倒', '值', '假', '做', '停', '儿', '元', '兄', '充', '先',
    '光', '克', '党', '全', '公', '六', '兰', '共', '关', '兴', '兵', '其', '具', '典', '养', '内',
    '再', '写', '军', '农', '冲', '决', '况', '冷', '准', '几', '出', '击', '分', '切', '划', '列',
    '刘', '则', '刚', '创', '初', '判', '利', '别', '到', '制', '刻', '前', '剑', '剧', '副', '办',
    '功', '加', '务', '动', '助', '劳', '势', '包', '化', '北', '区', '医', '升', '半', '华', '协',
    '单', '南', '占', '卫', '印', '即', '却', '厂', '历', '压', '原', '去', '县', '参', '又', '及',
    '友', '双', '反', '发', '取', '受', '变', '口', '古', '句', '另', '只', '叫', '召', '可', '台',
    '史', '右', '叶', '号', '司', '吃', '各', '合', '同', '名', '后', '向', '吗', '否', '吧', '含',
    '听', '吴', '告', '员', '呢', '周', '味', '呼', '命', '和', '咱', '品', '哈', '响', '哥', '哪',
    '商', '啊', '四', '回', '因', '团', '园', '围', '国', '图', '在', '地', '场', '均', '坐', '块',
    '坚', '型', '城', '域', '基', '堂', '声', '处', '备', '复', '夏', '外', '多', '夜', '够', '央',
    '失', '头', '奇', '女', '她', '好', '如', '始', '姑', '委', '威', '娘', '子', '字', '存', '孙',
    '季', '学', '孩', '宁', '它', '守', '安', '宋', '完', '宗', '官', '定', '宜', '宝', '实', '审',
    '客', '宣', '室', '宫', '害', '家', '容', '密', '对', '导', '封', '射', '将', '小', '少', '尔',
    '尚', '尼', '尽', '局', '层', '居', '展', '山', '岁', '岛', '州', '工', '左', '差', '巴', '市',
    '布', '师', '希', '帝', '带', '席', '帮', '常', '平', '年', '并', '广', '应', '底', '府', '度',
    '座', '康', '建', '开', '异', '式', '引', '弟', '张', '弹', '归', '当', '录', '形', '往', '征',
    '待', '很', '律', '得', '心', '必', '志', '忙', '快', '念', '忽', '态', '怎', '怕', '思', '急',
    '性', '总', '恩', '息', '情', '惊', '成', '我', '或', '战', '户', '房', '所', '手', '才', '打',
    '执', '扩', '批', '找', '承', '技', '把', '投', '抗', '护', '报', '担', '拉', '招', '括', '拿',
    '持', '指', '按', '挥', '换', '据', '排', '接', '控', '推', '支', '收', '改', '攻', '放', '政',
    '故', '效', '敌', '救', '教', '敢', '文', '斗', '料', '断', '方', '施', '旅', '族', '无', '既',
    '早', '时', '昌', '明', '易', '星', '春', '是', '显', '晚', '曲', '更', '月', '有', '服', '望',
    '木', '本', '术', '朱', '机', '杀', '权', '李', '材', '村', '条', '来', '杨', '松', '板', '极',
    '构', '林', '果', '架', '某', '查', '标', '树', '校', '样', '核', '根', '格', '案', '桥', '检',
    '次', '欢', '欧', '止', '正', '此', '步', '武', '死', '段', '母', '每', '毒', '比', '毕', '毛',
    '民', '气', '水', '永', '求', '汉', '江', '沉', '沙', '没', '河', '油', '治', '法', '波', '注',
    '洋', '洞', '洪', '洲', '活', '派', '流', '测', '济', '海', '消', '深', '清', '渐', '火', '点',
    '烈', '热', '爱', '父', '爷', '片', '版', '物', '特', '状', '独', '率', '环', '现', '班', '球',
    '理', '甚', '生', '用', '电', '男', '画', '界', '留', '略', '病', '白', '百', '的', '皇', '皮',
    '益', '监', '目', '直', '相', '省', '看', '真', '眼', '着', '知', '石', '矿', '研', '破', '础',
    '示', '礼', '社', '祖', '神', '离', '种', '科', '积', '称', '移', '究', '空', '突', '立', '站',
    '竟', '章', '笑', '笔', '第', '米', '类', '系', '素', '紧', '红', '约', '级', '纪', '纳', '线',
    '练', '组', '细', '织', '终', '经', '结', '给', '绝', '统', '继', '续', '维', '网', '罗', '美',
    '老', '考', '者', '而', '职', '肉', '股', '育', '背', '胜', '胡', '能', '脑', '脚', '脸', '臣',
    '自', '至', '致', '航', '般', '船', '良', '色', '艺', '节', '花', '苏', '若', '苦', '英', '范',
    '茶', '荆', '草', '药', '获', '菜', '营', '著', '虽', '血', '行', '衣', '表', '被', '西', '要',
    '观', '规', '视', '觉', '角', '言', '计', '认', '让', '训', '议', '记', '讲', '许', '论', '设',
    '证', '评', '识', '诉', '词', '试', '诗', '话', '该', '语', '说', '请', '读', '谁', '调', '谈',
    '象', '负', '财', '责', '败', '货', '质', '贵', '费', '资', '走', '赶', '起', '足', '身', '车',
    '转', '轻', '较', '边', '达', '过', '运', '近', '还', '这', '进', '远', '连', '述', '退', '送',
    '适', '选', '通', '速', '造', '那', '邦', '部', '都', '鄂', '配', '酒', '采', '里', '重', '金',
    '钟', '钱', '铁', '银', '长', '门', '闻', '队', '防', '阳', '阵', '阶', '阿', '际', '陆', '陈',
    '降', '限', '院', '除', '险', '随', '难', '青', '非', '面', '革', '音', '顶', '项', '顺', '须',
    '顾', '预', '领', '风', '飞', '食', '饭', '首', '香', '马', '验', '高', '鱼', '黄', '齐', '龙',
];

/// The drawable alphabet of `mode`.
///
/// [`random_text`] picks only from it, and the embedded fonts hold a glyph for
/// every character of it.
///
/// ```
/// use portico::captcha::{charset, Mode};
///
/// assert!(!charset(Mode::Latin).contains(&'0'));
/// assert_eq!(charset(Mode::Digits).len(), 8);
/// ```
pub fn charset(mode: Mode) -> &'static [char] {
    match mode {
        Mode::Latin => &LATIN,
        Mode::Digits => &DIGITS,
        Mode::Chinese => &ZH,
    }
}

/// `len` characters drawn uniformly and independently from [`charset`]`(mode)`.
///
/// Pass a cryptographically secure generator (`rand::rngs::OsRng`, or
/// `rand::thread_rng()`, which is a CSPRNG in rand 0.8): the answer is a secret.
///
/// ```
/// use portico::captcha::{charset, random_text, Mode};
///
/// let text = random_text(Mode::Chinese, 4, &mut rand::thread_rng());
/// assert_eq!(text.chars().count(), 4);
/// assert!(text.chars().all(|c| charset(Mode::Chinese).contains(&c)));
/// ```
pub fn random_text<R: Rng + ?Sized>(mode: Mode, len: usize, rng: &mut R) -> String {
    let set = charset(mode);
    (0..len).map(|_| set[rng.gen_range(0..set.len())]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// GB2312 level 1 decoded from its byte pairs: rows 16-55 are lead bytes
    /// 0xB0..=0xD7, cells 1-94 are trail bytes 0xA1..=0xFE, and row 55 stops
    /// at cell 89.
    fn gb2312_level1() -> Vec<char> {
        let mut out = Vec::new();
        for hi in 0xB0u8..=0xD7 {
            for lo in 0xA1u8..=0xFE {
                if hi == 0xD7 && lo > 0xF9 {
                    continue;
                }
                let pair = [hi, lo];
                let (s, had_errors) = encoding_rs::GBK.decode_without_bom_handling(&pair);
                assert!(!had_errors, "{hi:02X}{lo:02X}");
                let mut it = s.chars();
                out.push(it.next().unwrap());
                assert!(it.next().is_none());
            }
        }
        out
    }

    #[test]
    fn level1_table_is_the_known_one() {
        let l1 = gb2312_level1();
        assert_eq!(l1.len(), 3755);
        assert_eq!(l1[0], '啊');
        assert_eq!(l1[3754], '座');
    }

    #[test]
    fn chinese_charset_is_within_gb2312_level1() {
        let l1 = gb2312_level1();
        for c in ZH {
            assert!(l1.contains(&c), "{c} is not GB2312 level 1");
        }
    }

    #[test]
    fn charsets_are_sorted_and_unique() {
        for mode in [Mode::Latin, Mode::Digits, Mode::Chinese] {
            let set = charset(mode);
            assert!(set.windows(2).all(|w| w[0] < w[1]), "{mode:?}");
        }
    }

    #[test]
    fn latin_has_no_confusables() {
        for c in "0OoQD1lIi2Zz5Ss8B6Gb9gq".chars() {
            assert!(!LATIN.contains(&c), "{c:?}");
        }
        for c in "01".chars() {
            assert!(!DIGITS.contains(&c), "{c:?}");
        }
    }

    #[test]
    fn chinese_random_text_stays_in_charset() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..2000 {
            let t = random_text(Mode::Chinese, 4, &mut rng);
            assert_eq!(t.chars().count(), 4);
            assert!(t.chars().all(|c| ZH.contains(&c)), "{t}");
        }
        assert_eq!(random_text(Mode::Latin, 0, &mut rng), "");
    }
}
